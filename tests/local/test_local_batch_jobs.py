"""Batch job processing: input checks, output layout, manifest, per-record errors per family."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bedrock_batch_nb.local import REPLY_PREFIX, LocalBedrock

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def claude(text: str) -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


def nova(text: str) -> dict[str, Any]:
    return {
        "schemaVersion": "messages-v1",
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"max_new_tokens": 64, "temperature": 0.2},
    }


def converse(text: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.5},
    }


def titan(text: str) -> dict[str, Any]:
    return {"inputText": text, "dimensions": 256, "normalize": True}


def llama(text: str) -> dict[str, Any]:
    return {"prompt": text, "max_gen_len": 64, "temperature": 0.1}


def mistral(text: str) -> dict[str, Any]:
    return {"prompt": f"<s>[INST] {text} [/INST]", "max_tokens": 64}


FAMILIES = [
    (HAIKU, claude, {"anthropic_version": "bedrock-2023-05-31", "messages": []}),
    ("us.amazon.nova-lite-v1:0", nova, {"messages": "not a list"}),
    ("amazon.titan-embed-text-v2:0", titan, {"inputText": "x", "dimensions": 300}),
    ("meta.llama3-1-8b-instruct-v1:0", llama, {"prompt": "x", "max_gen_len": 5000}),
    ("mistral.mistral-7b-instruct-v0:2", mistral, {"text": "no prompt key"}),
]


def test_completed_job_layout_and_manifest(lb: LocalBedrock, jobs: Any) -> None:
    texts = [f"question number {i}" for i in range(120)]
    job, lines, manifest = jobs.run([claude(t) for t in texts])
    assert job["status"] == "Completed"
    assert manifest.keys() == {
        "totalRecordCount",
        "processedRecordCount",
        "successRecordCount",
        "errorRecordCount",
        "inputTokenCount",
        "outputTokenCount",
    }
    assert manifest["totalRecordCount"] == manifest["successRecordCount"] == 120
    assert manifest["errorRecordCount"] == 0
    assert manifest["inputTokenCount"] > 0 and manifest["outputTokenCount"] > 0
    ids = [line["recordId"] for line in lines]
    assert sorted(ids) == [f"rec-{i:05d}" for i in range(120)]
    assert ids != sorted(ids)  # output order is not input order
    for line in lines:
        assert line.keys() == {"recordId", "modelInput", "modelOutput"}
        i = int(line["recordId"].split("-")[1])
        assert line["modelInput"] == claude(texts[i])
        out = line["modelOutput"]
        assert out["type"] == "message" and out["role"] == "assistant"
        assert texts[i] in out["content"][0]["text"]
        assert out["usage"]["input_tokens"] > 0
    assert manifest["outputTokenCount"] == sum(
        line["modelOutput"]["usage"]["output_tokens"] for line in lines
    )
    keys = {o["Key"] for o in lb.s3_client().list_objects_v2(Bucket=lb.bucket)["Contents"]}
    job_id = job["jobArn"].rsplit("/", 1)[-1]
    assert f"out/{job_id}/part-00001.jsonl.out" in keys
    assert f"out/{job_id}/manifest.json.out" in keys


@pytest.mark.parametrize(("model", "make", "bad"), FAMILIES, ids=lambda v: str(v)[:20])
def test_bad_bodies_become_error_lines(
    lb: LocalBedrock, jobs: Any, model: str, make: Any, bad: dict[str, Any]
) -> None:
    bodies = [make(f"text {i}") for i in range(100)] + [bad] * 3
    job, lines, manifest = jobs.run(bodies, model=model)
    assert job["status"] == "Completed"
    assert job["errorRecordCount"] == manifest["errorRecordCount"] == 3
    assert job["successRecordCount"] == manifest["successRecordCount"] == 100
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 3
    for line in errors:
        assert line.keys() == {"recordId", "modelInput", "error"}
        assert line["modelInput"] == bad
        assert line["error"]["errorCode"] == 400
        assert "Malformed input request" in line["error"]["errorMessage"]


@pytest.mark.parametrize(("model", "make", "bad"), FAMILIES, ids=lambda v: str(v)[:20])
def test_each_family_answers_in_its_own_shape(
    lb: LocalBedrock, jobs: Any, model: str, make: Any, bad: dict[str, Any]
) -> None:
    _, lines, _ = jobs.run([make(f"family text {i}") for i in range(100)], model=model)
    out = lines[0]["modelOutput"]
    text = lines[0]["modelInput"]
    if "titan" in model:
        assert len(out["embedding"]) == 256 and out["inputTextTokenCount"] > 0
    elif "nova" in model:
        assert out["output"]["message"]["content"][0]["text"].startswith(REPLY_PREFIX)
        assert (
            out["usage"]["totalTokens"]
            == out["usage"]["inputTokens"] + out["usage"]["outputTokens"]
        )
        assert text["messages"][0]["content"][0]["text"] in json.dumps(out)
    elif "llama" in model:
        assert text["prompt"] in out["generation"] and out["stop_reason"] == "stop"
        assert out["prompt_token_count"] > 0 and out["generation_token_count"] > 0
    elif "mistral" in model:
        assert text["prompt"] in out["outputs"][0]["text"]
        assert out["outputs"][0]["stop_reason"] == "stop"
    else:
        assert out["stop_reason"] == "end_turn" and out["stop_sequence"] is None


def test_converse_invocation_type(lb: LocalBedrock, jobs: Any) -> None:
    bodies = [converse(f"conv {i}") for i in range(100)] + [claude("not converse")]
    job, lines, manifest = jobs.run(bodies, model="amazon.nova-pro-v1:0",
                                    modelInvocationType="Converse")  # fmt: skip
    assert job["modelInvocationType"] == "Converse"
    assert manifest["successRecordCount"] == 100 and manifest["errorRecordCount"] == 1
    ok = next(line for line in lines if "modelOutput" in line)
    assert set(ok["modelOutput"]) >= {"output", "stopReason", "usage"}
    i = ok["recordId"].split("-")[1]
    assert f"conv {int(i)}" in ok["modelOutput"]["output"]["message"]["content"][0]["text"]


def test_missing_record_ids_are_generated(lb: LocalBedrock, jobs: Any) -> None:
    uri = jobs.put("in/noid/part-00001.jsonl", [llama(f"p{i}") for i in range(100)], ids=False)
    arn = jobs.create(uri, model="meta.llama3-1-70b-instruct-v1:0")
    assert jobs.wait(arn)["status"] == "Completed"
    lines, _ = jobs.output(arn)
    ids = {json.loads(line)["recordId"] for line in lines}
    assert len(ids) == 100 and all(ids)


def test_prefix_input_reads_every_jsonl_file(lb: LocalBedrock, jobs: Any) -> None:
    jobs.put("in/many/part-00001.jsonl", [claude(f"a{i}") for i in range(60)])
    jobs.put("in/many/part-00002.jsonl", [claude(f"b{i}") for i in range(60)])
    jobs.put("in/many/readme.txt", [], raw="not an input file")
    arn = jobs.create(f"s3://{lb.bucket}/in/many/")
    job = jobs.wait(arn)
    assert job["status"] == "Completed" and job["totalRecordCount"] == 120
    first, manifest = jobs.output(arn, "part-00001.jsonl")
    second, _ = jobs.output(arn, "part-00002.jsonl")
    assert len(first) == len(second) == 60
    assert manifest["totalRecordCount"] == 120


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (None, "fewer than the minimum of 100"),
        ('{"recordId": "a", "modelInput": {}}\nthis is not json\n', "not valid JSON"),
        ('{"recordId": "a", "input": {}}\n', "modelInput"),
        ('["a list"]\n', "modelInput"),
    ],
)
def test_invalid_input_fails_the_job(
    lb: LocalBedrock, jobs: Any, raw: str | None, words: str
) -> None:
    uri = jobs.put("in/bad/part-00001.jsonl", [claude("x")] * 99, raw=raw)
    job = jobs.wait(jobs.create(uri))
    assert job["status"] == "Failed"
    assert words in job["message"]
    assert job["totalRecordCount"] == 0


def test_missing_input_fails_the_job(lb: LocalBedrock, jobs: Any) -> None:
    job = jobs.wait(jobs.create(f"s3://{lb.bucket}/does/not/exist.jsonl"))
    assert job["status"] == "Failed"
    assert "No input files" in job["message"]


def test_limits_are_configurable(lb: LocalBedrock, jobs: Any) -> None:
    lb.limits.max_records = 150
    job = jobs.wait(jobs.create(jobs.put("in/big/a.jsonl", [claude("x")] * 151)))
    assert job["status"] == "Failed" and "150" in job["message"]
    lb.limits.max_file_bytes = 1000
    job = jobs.wait(jobs.create(jobs.put("in/big/b.jsonl", [claude("x")] * 120), name="j2"))
    assert job["status"] == "Failed" and "maximum input file size" in job["message"]
    lb.limits.max_file_bytes = 10**9
    lb.limits.min_records = 1
    job = jobs.wait(jobs.create(jobs.put("in/big/c.jsonl", [claude("x")]), name="j3"))
    assert job["status"] == "Completed"


def test_in_progress_slots_serialise_jobs(lb: LocalBedrock, jobs: Any) -> None:
    lb.limits.in_progress_slots_per_model = 1
    uri = jobs.put("in/slots/a.jsonl", [claude("x")] * 100)
    arns = [jobs.create(uri, name=f"slot{i}") for i in range(3)]
    for arn in arns:
        assert jobs.wait(arn)["status"] == "Completed"
    # never two InProgress at once: each job's InProgress window starts after the previous ends
    assert lb.stats.max_active_jobs_per_model[HAIKU] == 3


def test_jobs_side_by_side_never_end_without_their_output(lb: LocalBedrock, jobs: Any) -> None:
    """Jobs side by side each end with their output in S3 (written just before the end),
    the manifest agreeing with the job's counts."""
    uri = jobs.put("in/clock/a.jsonl", [claude(f"x{i}") for i in range(100)])
    arns = [jobs.create(uri, name=f"clock{i}") for i in range(6)]
    for arn in arns:
        job = jobs.wait(arn)
        assert job["status"] == "Completed"
        lines, manifest = jobs.output(arn, "a.jsonl")
        assert len(lines) == 100 == job["processedRecordCount"]
        assert manifest["processedRecordCount"] == 100 == manifest["successRecordCount"]
    assert lb.store.job(arns[0]).written == 100  # written once, before it ended
