"""CreateModelInvocationJob / Get / List / Stop and ListFoundationModels through boto3."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_batch_nb.local import LocalBedrock

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


def _request(lb: LocalBedrock, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jobName": "job-1",
        "roleArn": lb.role_arn,
        "modelId": HAIKU,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{lb.bucket}/in/nothing.jsonl"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{lb.bucket}/out/"}},
    }
    request.update(overrides)
    return request


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_create_then_get_by_arn_and_by_id(lb: LocalBedrock, bedrock: Any, jobs: Any) -> None:
    uri = jobs.put("in/x.jsonl", [BODY] * 100)
    arn = bedrock.create_model_invocation_job(
        **_request(
            lb,
            clientRequestToken="tok-1",
            timeoutDurationInHours=24,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": uri}},
        )
    )["jobArn"]
    job_id = arn.rsplit("/", 1)[-1]
    assert arn == f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{job_id}"
    assert len(job_id) == 12 and job_id.isalnum() and job_id == job_id.lower()
    by_arn = bedrock.get_model_invocation_job(jobIdentifier=arn)
    by_id = bedrock.get_model_invocation_job(jobIdentifier=job_id)
    assert by_arn["jobArn"] == by_id["jobArn"] == arn
    assert by_arn["jobName"] == "job-1"
    assert by_arn["modelId"] == HAIKU
    assert by_arn["roleArn"] == lb.role_arn
    assert by_arn["clientRequestToken"] == "tok-1"
    assert by_arn["timeoutDurationInHours"] == 24
    assert by_arn["inputDataConfig"]["s3InputDataConfig"]["s3Uri"] == uri
    assert isinstance(by_arn["submitTime"], dt.datetime)
    assert by_arn["jobExpirationTime"] - by_arn["submitTime"] == dt.timedelta(hours=24)
    assert by_arn["status"] in {"Submitted", "Validating", "Scheduled", "InProgress"}
    done = jobs.wait(arn)
    assert done["status"] == "Completed"
    assert done["endTime"] >= done["submitTime"]
    assert done["totalRecordCount"] == done["successRecordCount"] == 100


def test_status_walks_through_the_life_cycle(lb: LocalBedrock, bedrock: Any, jobs: Any) -> None:
    arn = jobs.create(jobs.put("in/x.jsonl", [BODY] * 100))
    seen = []
    while not seen or seen[-1] not in ("Completed", "Failed"):
        status = bedrock.get_model_invocation_job(jobIdentifier=arn)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.005)
    assert seen[-1] == "Completed"
    order = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    assert [s for s in order if s in seen] == seen  # never out of order
    assert "InProgress" in seen


def test_unknown_job_is_resource_not_found(bedrock: Any) -> None:
    with pytest.raises(ClientError) as exc:
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert _code(exc) == "ResourceNotFoundException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        bedrock.stop_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert _code(exc) == "ResourceNotFoundException"


def test_idempotent_token_returns_the_same_job(lb: LocalBedrock, bedrock: Any) -> None:
    first = bedrock.create_model_invocation_job(**_request(lb, clientRequestToken="same"))
    second = bedrock.create_model_invocation_job(**_request(lb, clientRequestToken="same"))
    assert first["jobArn"] == second["jobArn"]
    assert lb.stats.jobs_created == 1
    assert lb.stats.create_calls == 2


def test_duplicate_name_with_other_token_conflicts(lb: LocalBedrock, bedrock: Any) -> None:
    bedrock.create_model_invocation_job(**_request(lb))
    with pytest.raises(ClientError) as exc:
        bedrock.create_model_invocation_job(**_request(lb))
    assert _code(exc) == "ConflictException"


def test_quota_exceeded_per_model(lb: LocalBedrock, bedrock: Any) -> None:
    lb.quota = 2
    lb.timings.submitted = 30  # keep the jobs active
    for i in range(2):
        bedrock.create_model_invocation_job(**_request(lb, jobName=f"q{i}"))
    with pytest.raises(ClientError) as exc:
        bedrock.create_model_invocation_job(**_request(lb, jobName="q2"))
    assert _code(exc) == "ServiceQuotaExceededException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # another model has its own quota; an inference profile counts against its base model
    bedrock.create_model_invocation_job(
        **_request(lb, jobName="other", modelId="amazon.nova-lite-v1:0")
    )
    with pytest.raises(ClientError) as exc:
        bedrock.create_model_invocation_job(**_request(lb, jobName="q3", modelId=f"us.{HAIKU}"))
    assert _code(exc) == "ServiceQuotaExceededException"
    lb.timings.submitted = 0.0
    assert lb.wait_idle()
    bedrock.create_model_invocation_job(**_request(lb, jobName="q4"))  # slots freed
    assert lb.stats.max_active_jobs_per_model[HAIKU] == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"jobName": "-starts-with-dash"}, "jobName"),
        ({"jobName": "has space"}, "jobName"),
        ({"jobName": "a" * 64}, "jobName"),
        ({"roleArn": "arn:aws:iam::123456789012:user/bob"}, "roleArn"),
        ({"roleArn": "not-an-arn"}, "roleArn"),
        (
            {"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "https://bucket/x.jsonl"}}},
            "s3Uri",
        ),
        ({"outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://Bad_Bucket/out"}}}, "s3Uri"),
        ({"modelId": "acme.unknown-model-v1:0"}, "model identifier"),
        ({"timeoutDurationInHours": 23}, "timeoutDurationInHours"),
        ({"timeoutDurationInHours": 169}, "timeoutDurationInHours"),
        (
            {"modelId": "amazon.titan-embed-text-v2:0", "modelInvocationType": "Converse"},
            "Converse",
        ),
    ],
)
def test_create_validation_errors(
    lb: LocalBedrock, bedrock: Any, overrides: dict[str, Any], field: str
) -> None:
    request = _request(lb, **overrides)
    # bypass botocore's own client-side range checks so the server does the validating
    bedrock.meta.events.register_first(
        "before-parameter-build.bedrock.CreateModelInvocationJob", lambda **kw: None
    )
    with pytest.raises(ClientError) as exc:
        _create_unvalidated(lb, request)
    assert _code(exc) == "ValidationException"
    assert field in exc.value.response["Error"]["Message"]
    assert lb.stats.jobs_created == 0


def _create_unvalidated(lb: LocalBedrock, request: dict[str, Any]) -> None:
    client = lb.client("bedrock", parameter_validation=False, retries={"total_max_attempts": 1})
    client.create_model_invocation_job(**request)


@pytest.mark.parametrize(
    "model_id",
    [
        HAIKU,
        f"us.{HAIKU}",
        f"eu.{HAIKU}",
        f"apac.{HAIKU}",
        f"global.{HAIKU}",
        f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}",
        "amazon.titan-embed-text-v2:0",
    ],
)
def test_accepted_model_ids(lb: LocalBedrock, bedrock: Any, model_id: str) -> None:
    arn = bedrock.create_model_invocation_job(**_request(lb, modelId=model_id))["jobArn"]
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["modelId"] == model_id


def test_list_filters_sort_and_paginate(lb: LocalBedrock, bedrock: Any) -> None:
    arns = []
    for i in range(7):
        arns.append(
            bedrock.create_model_invocation_job(**_request(lb, jobName=f"run42-part{i}"))["jobArn"]
        )
        time.sleep(0.002)
    bedrock.create_model_invocation_job(
        **_request(lb, jobName="other-run", modelId="amazon.nova-micro-v1:0")
    )
    paginator = bedrock.get_paginator("list_model_invocation_jobs")
    pages = list(
        paginator.paginate(
            nameContains="run42", sortOrder="Ascending", PaginationConfig={"PageSize": 3}
        )
    )
    assert [len(p["invocationJobSummaries"]) for p in pages] == [3, 3, 1]
    listed = [s["jobArn"] for p in pages for s in p["invocationJobSummaries"]]
    assert listed == arns
    summary = pages[0]["invocationJobSummaries"][0]
    for key in ("jobName", "modelId", "roleArn", "status", "submitTime", "inputDataConfig"):
        assert key in summary
    newest_first = bedrock.list_model_invocation_jobs(sortOrder="Descending", maxResults=2)
    assert newest_first["invocationJobSummaries"][0]["jobName"] == "other-run"
    assert "nextToken" in newest_first
    everything = bedrock.list_model_invocation_jobs()["invocationJobSummaries"]
    assert len(everything) == 8
    middle = everything[4]["submitTime"]
    after = bedrock.list_model_invocation_jobs(submitTimeAfter=middle)["invocationJobSummaries"]
    before = bedrock.list_model_invocation_jobs(submitTimeBefore=middle)["invocationJobSummaries"]
    assert all(s["submitTime"] > middle for s in after)
    assert all(s["submitTime"] < middle for s in before)
    assert lb.wait_idle()
    done = bedrock.list_model_invocation_jobs(statusEquals="Failed")["invocationJobSummaries"]
    assert len(done) == 8  # the input file does not exist
    assert (
        bedrock.list_model_invocation_jobs(statusEquals="Completed")["invocationJobSummaries"] == []
    )


def test_stop_moves_to_stopped_and_final_jobs_refuse(
    lb: LocalBedrock, bedrock: Any, jobs: Any
) -> None:
    lb.timings.scheduled = 0.5
    arn = jobs.create(jobs.put("in/x.jsonl", [BODY] * 100))
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping"
    assert jobs.wait(arn)["status"] == "Stopped"
    with pytest.raises(ClientError) as exc:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert _code(exc) == "ValidationException"


def test_stop_while_in_progress_keeps_finished_records(
    lb: LocalBedrock, bedrock: Any, jobs: Any
) -> None:
    lb.timings.records_per_second = 400  # 1,000 records take 2.5 s
    arn = jobs.create(jobs.put("in/x.jsonl", [BODY] * 1000))
    while bedrock.get_model_invocation_job(jobIdentifier=arn)["processedRecordCount"] < 50:
        time.sleep(0.01)
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    job = jobs.wait(arn)
    assert job["status"] == "Stopped"
    lines, manifest = jobs.output(arn, "x.jsonl")
    assert 50 <= len(lines) < 1000
    assert manifest["processedRecordCount"] == len(lines) == job["processedRecordCount"]
    assert manifest["totalRecordCount"] == 1000


def test_get_foundation_model_takes_a_model_id_or_its_arn_not_a_profile(bedrock: Any) -> None:
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
    for identifier in (HAIKU, arn):
        details = bedrock.get_foundation_model(modelIdentifier=identifier)["modelDetails"]
        assert details["modelId"] == HAIKU and details["modelArn"] == arn
    for unknown in (f"us.{HAIKU}", "anthropic.claude-3-haiku-20240307-v1:1"):
        with pytest.raises(ClientError) as caught:
            bedrock.get_foundation_model(modelIdentifier=unknown)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_inference_profiles_are_the_ids_a_job_accepts(lb: LocalBedrock, bedrock: Any) -> None:
    profile = bedrock.get_inference_profile(inferenceProfileIdentifier=f"us.{HAIKU}")
    assert profile["inferenceProfileId"] == f"us.{HAIKU}"
    assert profile["type"] == "SYSTEM_DEFINED" and profile["status"] == "ACTIVE"
    assert profile["models"] == [
        {"modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"}
    ]
    by_arn = bedrock.get_inference_profile(
        inferenceProfileIdentifier=profile["inferenceProfileArn"]
    )
    assert by_arn["inferenceProfileId"] == f"us.{HAIKU}"
    for unknown in (HAIKU, f"us.{HAIKU[:-1]}1"):
        with pytest.raises(ClientError) as caught:
            bedrock.get_inference_profile(inferenceProfileIdentifier=unknown)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    pages = list(bedrock.get_paginator("list_inference_profiles").paginate(maxResults=7))
    ids = [p["inferenceProfileId"] for page in pages for p in page["inferenceProfileSummaries"]]
    assert len(pages) > 1 and len(ids) == len(set(ids))
    assert {f"us.{HAIKU}", f"eu.{HAIKU}", "global.amazon.nova-lite-v1:0"} <= set(ids)
    for i, profile_id in enumerate(ids[:: len(ids) // 5]):  # a job takes what the list names
        request = _request(lb, jobName=f"job-{i}", modelId=profile_id)
        job = bedrock.create_model_invocation_job(**request)
        assert (
            bedrock.get_model_invocation_job(jobIdentifier=job["jobArn"])["modelId"] == profile_id
        )
    assert not bedrock.list_inference_profiles(typeEquals="APPLICATION")[
        "inferenceProfileSummaries"
    ]


def test_list_foundation_models(bedrock: Any) -> None:
    models = bedrock.list_foundation_models()["modelSummaries"]
    ids = {m["modelId"] for m in models}
    for expected in (
        HAIKU,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "amazon.titan-embed-text-v2:0",
        "amazon.nova-lite-v1:0",
        "amazon.nova-micro-v1:0",
        "amazon.nova-pro-v1:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
        "mistral.mistral-7b-instruct-v0:2",
        "mistral.mistral-large-2402-v1:0",
    ):
        assert expected in ids
    embed = bedrock.list_foundation_models(byOutputModality="EMBEDDING")["modelSummaries"]
    assert [m["modelId"] for m in embed] == ["amazon.titan-embed-text-v2:0"]
    by_provider = bedrock.list_foundation_models(byProvider="Meta")["modelSummaries"]
    assert {m["providerName"] for m in by_provider} == {"Meta"}
    assert all("ON_DEMAND" in m["inferenceTypesSupported"] for m in models)
