"""The orchestrator's bookkeeping, without a service: what a poll's summaries do to a job,
and when the next poll is due."""

from __future__ import annotations

import datetime as dt
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


def test_a_job_that_outlived_its_prediction_is_left_to_regular_polls() -> None:
    job = _job()
    orchestrator = _orchestrator([job])
    _in_progress(job, 10)
    orchestrator._predict(job, 100.0)
    _in_progress(job, 90)
    orchestrator._predict(job, 100.8)
    orchestrator._seen_at = 101.2  # polled after the predicted end: still running
    _in_progress(job, 90)
    orchestrator._predict(job, 101.2)  # no new records: no new prediction
    assert orchestrator._next_poll(102.2, 1.0) == 102.2
    _update(job, {"status": "Completed", "processedRecordCount": 100})
    orchestrator._predict(job, 101.4)
    assert orchestrator._etas == {}
