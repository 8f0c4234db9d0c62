"""Every fault knob, set in process and over HTTP, and the /_local controls."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_batch_nb.local import LocalBedrock

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def claude(text: str) -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": text}],
    }


BODIES = [claude(f"text {i}") for i in range(200)]


def _post(lb: LocalBedrock, path: str, payload: Any = None) -> Any:
    data = json.dumps(payload or {}).encode()
    request = urllib.request.Request(lb.bedrock_url + path, data=data, method="POST")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def _get(lb: LocalBedrock, path: str) -> Any:
    with urllib.request.urlopen(lb.bedrock_url + path) as response:
        return json.loads(response.read())


def test_record_error_rate(lb: LocalBedrock, jobs: Any) -> None:
    lb.faults.record_error_rate = 0.25
    job, lines, manifest = jobs.run(BODIES)
    errors = [line for line in lines if "error" in line]
    assert 20 < len(errors) < 80
    assert all(line["error"]["errorCode"] == 500 for line in errors)
    assert manifest["errorRecordCount"] == len(errors) == job["errorRecordCount"]
    assert job["status"] == "Completed"
    # drawn per job and record: a retry in another job draws again (a transient error)
    _, again, _ = jobs.run(BODIES, name="job2")
    failed_again = {x["recordId"] for x in again if "error" in x}
    assert 20 < len(failed_again) < 80
    assert failed_again != {x["recordId"] for x in errors}


def test_fail_text_containing(lb: LocalBedrock, jobs: Any, runtime: Any) -> None:
    _post(lb, "/_local/faults", {"fail_text_containing": "text 7"})
    _, lines, manifest = jobs.run(BODIES)
    failed = sorted(line["recordId"] for line in lines if "error" in line)
    # "text 7" and "text 70".."text 79"
    assert len(failed) == 11 == manifest["errorRecordCount"]
    with pytest.raises(ClientError) as exc:
        runtime.invoke_model(modelId=HAIKU, body=json.dumps(claude("say text 7")))
    assert exc.value.response["Error"]["Code"] == "ModelErrorException"


def test_throttling_reaches_botocore(lb: LocalBedrock, bedrock: Any, runtime: Any) -> None:
    lb.faults.throttle_rate = 1.0
    for call in (
        lambda: bedrock.list_model_invocation_jobs(),
        lambda: runtime.invoke_model(modelId=HAIKU, body=json.dumps(claude("x"))),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["Error"]["Code"] == "ThrottlingException"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    lb.faults.throttle_rate = 0.0
    lb.faults.throttle_next_calls = 1
    # the standard retry mode rides over a throttle
    patient = lb.client("bedrock", retries={"total_max_attempts": 4, "mode": "standard"})
    assert patient.list_model_invocation_jobs()["invocationJobSummaries"] == []
    assert lb.stats.throttled_calls == 3


def test_quota_exceeded_creates(lb: LocalBedrock, bedrock: Any, jobs: Any) -> None:
    lb.faults.quota_exceeded_creates = 1
    uri = jobs.put("in/q.jsonl", BODIES)
    with pytest.raises(ClientError) as exc:
        jobs.create(uri)
    assert exc.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert jobs.wait(jobs.create(uri))["status"] == "Completed"


@pytest.mark.parametrize(
    ("counter", "names", "status"),
    [
        ("fail_jobs", "fail_job_names", "Failed"),
        ("expire_jobs", "expire_job_names", "Expired"),
        ("partial_jobs", "partial_job_names", "PartiallyCompleted"),
    ],
)
def test_job_fates(lb: LocalBedrock, jobs: Any, counter: str, names: str, status: str) -> None:
    uri = jobs.put("in/fate.jsonl", BODIES)
    lb.faults.update({counter: 1, names: ["doomed"]})
    first = jobs.wait(jobs.create(uri, name="first"))
    second = jobs.wait(jobs.create(uri, name="second"))
    named = jobs.wait(jobs.create(uri, name="is-doomed-too"))
    assert (first["status"], second["status"], named["status"]) == (status, "Completed", status)
    assert first["message"]
    if status != "Failed":
        lines, manifest = jobs.output(first["jobArn"], "fate.jsonl")
        assert len(lines) == 100 == manifest["processedRecordCount"]
        assert manifest["totalRecordCount"] == 200 == first["totalRecordCount"]


def test_dropped_and_corrupt_lines(lb: LocalBedrock, jobs: Any) -> None:
    lb.faults.update({"drop_output_lines": 0.2, "corrupt_output_lines": 0.2})
    uri = jobs.put("in/lines.jsonl", BODIES)
    arn = jobs.create(uri)
    assert jobs.wait(arn)["status"] == "Completed"
    lines, manifest = jobs.output(arn, "lines.jsonl")
    assert 100 < len(lines) < 200
    assert manifest["successRecordCount"] == 200  # the manifest still counts every record
    broken = 0
    for line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            broken += 1
    assert 10 < broken < 70


def test_http_controls(lb: LocalBedrock, bedrock: Any, jobs: Any) -> None:
    faults = _post(lb, "/_local/faults", {"record_error_rate": 0.5})
    assert faults["record_error_rate"] == 0.5 == lb.faults.record_error_rate
    assert _get(lb, "/_local/faults")["record_error_rate"] == 0.5
    with pytest.raises(urllib.error.HTTPError) as exc:
        _post(lb, "/_local/faults", {"no_such_knob": 1})
    assert exc.value.code == 400
    jobs.wait(jobs.create(jobs.put("in/ctl.jsonl", BODIES)))
    bedrock.list_model_invocation_jobs()
    stats = _get(lb, "/_local/stats")
    assert stats["create_calls"] == stats["jobs_created"] == 1
    assert stats["records_processed"] == 200
    assert stats["records_failed"] + stats["records_succeeded"] == 200
    assert stats["jobs_by_status"] == {"Completed": 1}
    assert stats["max_active_jobs"] == 1 and stats["active_jobs"] == 0
    assert stats["list_calls"] == 1 and stats["get_calls"] >= 1
    assert _post(lb, "/_local/reset") == {"ok": True}
    assert lb.faults.record_error_rate == 0.0
    assert bedrock.list_model_invocation_jobs()["invocationJobSummaries"] == []
    assert _get(lb, "/_local/stats")["jobs_created"] == 0
