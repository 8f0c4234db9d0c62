"""local_bedrock() points unmodified boto3 clients at the emulator, then restores the env."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest

from bedrock_batch_nb.local import BUCKET, ROLE_ARN, local_bedrock

KEYS = (
    "AWS_ENDPOINT_URL_BEDROCK",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "BEDROCK_BATCH_BUCKET",
    "BEDROCK_BATCH_ROLE_ARN",
)


def test_env_is_set_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "real-profile")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-token")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_BEDROCK", raising=False)
    before = dict(os.environ)
    with local_bedrock() as lb:
        for key in KEYS:
            assert os.environ[key] == lb.env[key]
        assert "AWS_PROFILE" not in os.environ and "AWS_SESSION_TOKEN" not in os.environ
        assert os.environ["BEDROCK_BATCH_BUCKET"] == BUCKET
        assert os.environ["BEDROCK_BATCH_ROLE_ARN"] == ROLE_ARN
        bedrock = boto3.client("bedrock")
        runtime = boto3.client("bedrock-runtime")
        s3 = boto3.client("s3")
        assert bedrock.meta.endpoint_url == runtime.meta.endpoint_url == lb.bedrock_url
        assert bedrock.meta.region_name == "us-east-1"
        assert bedrock.list_model_invocation_jobs()["invocationJobSummaries"] == []
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert BUCKET in names
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
        assert lb.s3_client().get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v"
    assert dict(os.environ) == before


def test_module_entry_point_prints_exports() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bedrock_batch_nb.local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in KEYS]
    finally:
        process.terminate()
        process.wait(timeout=10)
    exported = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert set(exported) == set(KEYS)
    assert exported["AWS_ENDPOINT_URL_BEDROCK"].startswith("http://127.0.0.1:")
