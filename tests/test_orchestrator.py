"""The orchestrator's bookkeeping, without a service: what a poll's summaries do to a job,
and when the next poll is due."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

from bedrock_batch_nb.chunking import Chunk
from bedrock_batch_nb.orchestrator import JobState, Orchestrator, SubmitSpec, _update


def _job(name: str = "run-0001") -> JobState:
    return JobState(Chunk(0, 0, 100), name, "s3://bucket/in/run-0001.jsonl")


def _orchestrator(jobs: list[JobState]) -> Orchestrator:
    async def final(job: JobState) -> None:
        return None

    spec = SubmitSpec("run", "model", "arn:aws:iam::123456789012:role/r", "s3://bucket/out/")
    return Orchestrator(
        object(),
        spec,
        jobs,
        max_concurrent_jobs=2,
        poll_interval=1.0,
        max_poll_interval=10.0,
        on_change=lambda note: None,
        on_job_final=final,
    )


def test_update_takes_bedrocks_submit_and_end_times() -> None:
    job = _job()
    job.submitted_at = 5.0  # when the create call returned, on the local clock
    submitted = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    ended = submitted + dt.timedelta(seconds=90)
    summary: dict[str, Any] = {
        "status": "Completed",
        "submitTime": submitted,
        "endTime": ended,
        "totalRecordCount": 100,
        "processedRecordCount": 100,
        "successRecordCount": 100,
    }
    assert _update(job, summary)
    assert job.submitted_at == submitted.timestamp()
    assert job.ended_at == ended.timestamp()
    assert job.ended_at - job.submitted_at == 90


def _in_progress(job: JobState, processed: int) -> None:
    job.arn = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefghijkl"
    _update(
        job, {"status": "InProgress", "totalRecordCount": 100, "processedRecordCount": processed}
    )


def test_a_poll_is_due_just_after_the_end_that_progress_predicts() -> None:
    job = _job()
    orchestrator = _orchestrator([job])
    _in_progress(job, 10)
    orchestrator._seen_at = 100.0
    orchestrator._predict(job, 100.0)
    assert orchestrator._next_poll(101.0, 1.0) == 101.0  # one sighting gives no pace
    _in_progress(job, 90)
    orchestrator._seen_at = 100.8
    orchestrator._predict(job, 100.8)  # 80 records in 0.8 s: the last 10 by 100.9
    due = orchestrator._next_poll(101.8, 1.0)
    assert 100.9 < due < 101.0
    # a later regular poll that comes first wins
    assert orchestrator._next_poll(100.85, 1.0) == 100.85


def test_a_job_that_outlived_its_prediction_is_polled_often_for_one_interval() -> None:
    job = _job()
    orchestrator = _orchestrator([job])
    _in_progress(job, 10)
    orchestrator._predict(job, 100.0)
    _in_progress(job, 90)
    orchestrator._predict(job, 100.8)
    orchestrator._seen_at = 100.95  # polled after the predicted end: still running
    _in_progress(job, 90)
    orchestrator._predict(job, 100.95)  # no new records: no new prediction
    assert orchestrator._next_poll(101.95, 1.0) == 100.95 + 0.1
    orchestrator._seen_at = 102.0  # a whole interval past its predicted end
    assert orchestrator._next_poll(103.0, 1.0) == 103.0  # left to the regular polls
    _update(job, {"status": "Completed", "processedRecordCount": 100})
    orchestrator._predict(job, 102.1)
    assert orchestrator._etas == {}


def test_a_poll_lists_the_jobs_from_the_earliest_running_one_on() -> None:
    orchestrator = _orchestrator([])
    assert orchestrator._list_after(["arn-a"]) is None  # no list seen yet: every job
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    orchestrator._note_submit_times(
        [
            {"jobArn": "arn-a", "submitTime": t0},
            {"jobArn": "arn-b", "submitTime": t0 + dt.timedelta(seconds=30)},
            {"jobArn": "arn-c", "submitTime": t0 + dt.timedelta(seconds=60)},
        ]
    )
    margin = dt.timedelta(seconds=1)
    assert orchestrator._list_after(["arn-b", "arn-c"]) == t0 + dt.timedelta(seconds=30) - margin
    # a job no list has shown yet was created after the latest one listed
    assert orchestrator._list_after(["arn-new"]) == t0 + dt.timedelta(seconds=60) - margin
    assert orchestrator._list_after([]) is None


class _FakeBedrock:
    """Jobs that end after two polls; every call is logged in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lists: list[dict[str, Any]] = []
        self.clock = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
        self.lock = threading.Lock()

    def create_model_invocation_job(self, **kwargs: Any) -> dict[str, str]:
        name = kwargs["jobName"]
        with self.lock:  # creates come from several threads at once
            arn = (
                f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{len(self.jobs):012d}"
            )
            self.clock += dt.timedelta(seconds=1)
            self.jobs[arn] = {"jobArn": arn, "jobName": name, "status": "InProgress", "polls": 0}
            self.jobs[arn]["submitTime"] = self.clock
            self.log.append(("create", name))
        return {"jobArn": arn}

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_model_invocation_jobs"
        return self

    def paginate(self, **kwargs: Any) -> Any:
        self.lists.append(kwargs)
        after = kwargs.get("submitTimeAfter")
        page = []
        for job in self.jobs.values():
            job["polls"] += 1
            if job["polls"] >= 2:
                job["status"] = "Completed"
                job.setdefault("endTime", self.clock)
            if after is None or job["submitTime"] > after:
                page.append({k: v for k, v in job.items() if k != "polls"})
        yield {"invocationJobSummaries": page}

    def get_model_invocation_job(self, jobIdentifier: str) -> dict[str, Any]:
        raise AssertionError("every job is listed")


def test_a_freed_slot_is_filled_before_the_ended_job_is_collected() -> None:
    bedrock = _FakeBedrock()
    jobs = [_job(f"run-{i:04d}") for i in range(5)]
    for job in jobs:
        job.staged = True

    async def collect(job: JobState) -> None:
        bedrock.log.append(("collect", job.name))
        job.collected = True

    async def main() -> Orchestrator:
        spec = SubmitSpec("run", "model", "arn:aws:iam::123456789012:role/r", "s3://b/out/")
        orchestrator = Orchestrator(
            bedrock,
            spec,
            jobs,
            max_concurrent_jobs=2,
            poll_interval=0.001,
            max_poll_interval=0.01,
            on_change=lambda note: None,
            on_job_final=collect,
        )
        try:
            await orchestrator.run()
        finally:
            orchestrator.close()
        return orchestrator

    orchestrator = asyncio.run(main())
    assert all(j.status == "Completed" and j.collected for j in jobs)
    creates = [name for op, name in bedrock.log if op == "create"]
    assert sorted(creates) == [j.name for j in jobs]  # each job once
    order = [f"{op} {name}" for op, name in bedrock.log]
    # the two first jobs end together: their slots are filled, then they are collected
    assert order.index("create run-0002") < order.index("collect run-0000")
    assert order.index("create run-0003") < order.index("collect run-0001")
    assert orchestrator.polls == len(bedrock.lists) - 1  # one list call a poll (+ adoption)
    assert any("submitTimeAfter" in call for call in bedrock.lists[2:])
