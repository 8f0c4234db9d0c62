"""The session's emulator (``tests/conftest.py``), reset before each test; helpers to run
batch jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bedrock_batch_nb.local import JobLimits, JobTimings, LocalBedrock

FINAL = {"Completed", "Failed", "Stopped", "PartiallyCompleted", "Expired"}
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def lb(emulator: LocalBedrock) -> Iterator[LocalBedrock]:
    emulator.reset()
    yield emulator
    vars(emulator.timings).update(vars(JobTimings()))
    vars(emulator.limits).update(vars(JobLimits()))
    emulator.wait_idle()
    emulator.reset()


@pytest.fixture
def bedrock(lb: LocalBedrock) -> Any:
    return lb.client("bedrock", retries={"total_max_attempts": 1})


@pytest.fixture
def runtime(lb: LocalBedrock) -> Any:
    return lb.client("bedrock-runtime", retries={"total_max_attempts": 1})


@pytest.fixture
def s3(lb: LocalBedrock) -> Any:
    return lb.s3_client()


class Jobs:
    """Helpers to stage inputs and run batch jobs against the emulator."""

    def __init__(self, lb: LocalBedrock, bedrock: Any) -> None:
        self.lb = lb
        self.bedrock = bedrock

    def put(self, key: str, bodies: list[Any], *, ids: bool = True, raw: str | None = None) -> str:
        return put_records(self.lb, key, bodies, ids=ids, raw=raw)

    def create(self, input_uri: str, **kw: Any) -> str:
        return create_job(self.bedrock, self.lb, input_uri, **kw)

    def wait(self, arn: str) -> dict[str, Any]:
        return wait_final(self.bedrock, arn)

    def output(self, arn: str, name: str = "part-00001.jsonl") -> tuple[list[str], dict[str, Any]]:
        return read_output(self.lb, arn, name)

    def run(
        self, bodies: list[Any], **kw: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        return run_job(self.bedrock, self.lb, bodies, **kw)


@pytest.fixture
def jobs(lb: LocalBedrock, bedrock: Any) -> Jobs:
    return Jobs(lb, bedrock)


def anthropic_body(text: str) -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


def put_records(
    lb: LocalBedrock, key: str, bodies: list[Any], *, ids: bool = True, raw: str | None = None
) -> str:
    """Write a JSONL input file and return its s3:// URI."""
    if raw is None:
        lines = []
        for i, body in enumerate(bodies):
            record: dict[str, Any] = {"modelInput": body}
            if ids:
                record = {"recordId": f"rec-{i:05d}", **record}
            lines.append(json.dumps(record))
        raw = "\n".join(lines) + "\n"
    lb.s3_client().put_object(Bucket=lb.bucket, Key=key, Body=raw.encode())
    return f"s3://{lb.bucket}/{key}"


def create_job(
    bedrock: Any,
    lb: LocalBedrock,
    input_uri: str,
    *,
    name: str = "job1",
    model: str = HAIKU,
    output_prefix: str = "out",
    **extra: Any,
) -> str:
    arn: str = bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=lb.role_arn,
        modelId=model,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{lb.bucket}/{output_prefix}/"}},
        **extra,
    )["jobArn"]
    return arn


def wait_final(bedrock: Any, arn: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in FINAL:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {arn} did not finish")


def read_output(
    lb: LocalBedrock, arn: str, name: str, output_prefix: str = "out"
) -> tuple[list[str], dict[str, Any]]:
    """Raw lines of ``<name>.out`` and the parsed manifest of the job."""
    s3 = lb.s3_client()
    job_id = arn.rsplit("/", 1)[-1]
    base = f"{output_prefix}/{job_id}/"
    text = s3.get_object(Bucket=lb.bucket, Key=f"{base}{name}.out")["Body"].read().decode()
    manifest = json.loads(
        s3.get_object(Bucket=lb.bucket, Key=f"{base}manifest.json.out")["Body"].read()
    )
    return text.splitlines(), manifest


def run_job(
    bedrock: Any,
    lb: LocalBedrock,
    bodies: list[Any],
    *,
    name: str = "job1",
    model: str = HAIKU,
    **extra: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Run a one-file job to its end: (description, parsed output lines, manifest)."""
    uri = put_records(lb, f"input/{name}/part-00001.jsonl", bodies)
    arn = create_job(bedrock, lb, uri, name=name, model=model, **extra)
    job = wait_final(bedrock, arn)
    lines, manifest = read_output(lb, arn, "part-00001.jsonl")
    return job, [json.loads(line) for line in lines], manifest
