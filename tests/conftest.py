"""Shared by the end-to-end and notebook tests: one emulator (Bedrock + moto S3 on loopback)
for the whole session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bedrock_batch_nb.local import JobLimits, JobTimings, LocalBedrock


@pytest.fixture(scope="session")
def emulator() -> Iterator[LocalBedrock]:
    with LocalBedrock() as local:
        yield local


@pytest.fixture
def aws(emulator: LocalBedrock, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBedrock]:
    """The emulator, emptied of jobs, stats, faults and objects, with this test's environment
    pointing every boto3 client at it (as ``local_bedrock()`` does)."""
    emulator.reset()
    s3 = emulator.s3_client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=emulator.bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=emulator.bucket, Key=obj["Key"])
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in emulator.env.items():
        monkeypatch.setenv(name, value)
    yield emulator
    # A test's timings, limits and quota must not leak into the next one.
    emulator.wait_idle()
    vars(emulator.timings).update(vars(JobTimings()))
    vars(emulator.limits).update(vars(JobLimits()))
