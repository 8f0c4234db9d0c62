"""How jobs run: submit within the concurrency cap, poll, stop, hand finished jobs on.

The :class:`Orchestrator` runs two coroutines.  One submits: it keeps at most
``max_concurrent_jobs`` jobs submitted or in progress, and creates the next jobs (side by
side) as soon as one is staged or a poll sees a slot free, before the ended job is handed
on to collection.  The other polls the whole run with one paginated
``ListModelInvocationJobs`` call filtered on the run id (not one call per job), from a
little before the earliest running job's submit time on (so that a poll reads the running
jobs, not every job of the run).  The poll interval starts at ``poll_interval`` and grows
by half while nothing changes, up to ``max_poll_interval``, except while jobs wait for a
slot; a job whose records predict its end gets a poll just after it.  Blocking boto3 calls
run in worker threads, so the loop never blocks.  It knows nothing about display: it publishes
:class:`RunStatus` snapshots.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .aws import describe_error, error_code
from .chunking import Chunk
from .errors import BatchRunError

ACTIVE_STATUSES = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
FINAL_STATUSES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
LIST_MARGIN = dt.timedelta(seconds=1)
"""How far before the earliest running job's submit time a poll's list reaches (Bedrock's
hosts' clocks may differ a little; a job left out is asked for alone)."""
PENDING = "Pending"
"""A chunk of ours that has not been submitted yet (not a Bedrock status)."""


@dataclass
class JobState:
    """One chunk of the run and, once submitted, its Bedrock job."""

    chunk: Chunk
    name: str
    input_uri: str
    positions: list[int] | None = None
    """The rows of a retry job (any rows); None for a first-pass job (``chunk``'s range)."""
    attempt: int = 0
    """0 for the first pass, then 1, 2, ... for jobs that retry failed records."""
    arn: str | None = None
    status: str = PENDING
    message: str | None = None
    submitted_at: float | None = None
    ended_at: float | None = None
    total: int = 0
    processed: int = 0
    success: int = 0
    errors: int = 0
    collected: bool = False
    staged: bool = False
    """Its input file is on S3 (a job is submitted only once it is)."""
    unreadable_lines: int = 0
    """Output lines of this job that could not be parsed (corrupted or truncated)."""

    @property
    def job_id(self) -> str | None:
        return self.arn.rsplit("/", 1)[-1] if self.arn else None

    @property
    def records(self) -> int:
        return self.chunk.size if self.positions is None else len(self.positions)

    def rows(self) -> range | list[int]:
        """Input positions of this job's records."""
        return (
            range(self.chunk.start, self.chunk.stop) if self.positions is None else self.positions
        )

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class RunStatus:
    """A snapshot of a run, safe to read from any thread."""

    run_id: str
    phase: str
    """created, preparing, staging, running, stopping, collecting, done, stopped or failed."""
    total_records: int
    jobs: tuple[JobState, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    note: str | None = None

    @property
    def processed(self) -> int:
        return sum(j.processed for j in self.jobs)

    @property
    def succeeded(self) -> int:
        return sum(j.success for j in self.jobs)

    @property
    def failed(self) -> int:
        return sum(j.errors for j in self.jobs)

    @property
    def active_jobs(self) -> int:
        return sum(j.active for j in self.jobs)

    @property
    def finished_jobs(self) -> int:
        return sum(j.final for j in self.jobs)

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    @property
    def done(self) -> bool:
        return self.phase in ("done", "stopped", "failed")

    def jobs_frame(self) -> Any:
        """One row per job: name, status, records and counts, times, message."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "job": j.chunk.index,
                    "name": j.name,
                    "status": j.status,
                    "records": j.records,
                    "processed": j.processed,
                    "succeeded": j.success,
                    "failed": j.errors,
                    "submitted_at": timestamp(j.submitted_at),
                    "ended_at": timestamp(j.ended_at),
                    "job_arn": j.arn,
                    "message": j.message,
                }
                for j in self.jobs
            ]
        )

    def __str__(self) -> str:
        return (
            f"run {self.run_id}: {self.phase}, {self.finished_jobs}/{len(self.jobs)} jobs done, "
            f"{self.active_jobs} active, {self.processed:,}/{self.total_records:,} records "
            f"processed ({self.failed:,} failed), {self.elapsed:.1f}s"
        )


CRASH_ENV = "BEDROCK_BATCH_CRASH_AT"
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Fault injection for resume tests: with ``BEDROCK_BATCH_CRASH_AT=<name>:<n>`` the
    process dies (as if killed) the n-th time it passes point ``name``: ``staging`` (a job's
    input uploaded), ``staged`` (all of them), ``submitted`` (a job created), ``polled`` (a
    status poll done) or ``collected`` (a job's output read)."""
    setting = os.environ.get(CRASH_ENV)
    if not setting:
        return
    point, _, count = setting.partition(":")
    if point == name:
        _crash_counts[name] = _crash_counts.get(name, 0) + 1
        if _crash_counts[name] >= int(count or 1):
            os._exit(75)


def client_request_token(run_id: str, job_name: str, input_uri: str) -> str:
    """A deterministic idempotency token: resubmitting the same job cannot create a second."""
    return hashlib.sha256(f"{run_id}\n{job_name}\n{input_uri}".encode()).hexdigest()


@dataclass
class SubmitSpec:
    """What every job of a run is created with."""

    run_id: str
    model_id: str
    role_arn: str
    output_uri: str
    invocation_type: str = "InvokeModel"
    timeout_hours: int | None = None
    kms_key_id: str | None = None
    bucket_owner: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def request(self, job: JobState) -> dict[str, Any]:
        owner = {"s3BucketOwner": self.bucket_owner} if self.bucket_owner else {}
        kms = {"s3EncryptionKeyId": self.kms_key_id} if self.kms_key_id else {}
        kwargs: dict[str, Any] = {
            "jobName": job.name,
            "roleArn": self.role_arn,
            "modelId": self.model_id,
            "clientRequestToken": client_request_token(self.run_id, job.name, job.input_uri),
            "inputDataConfig": {
                "s3InputDataConfig": {"s3Uri": job.input_uri, "s3InputFormat": "JSONL", **owner}
            },
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": self.output_uri, **kms, **owner}},
        }
        if self.invocation_type != "InvokeModel":
            kwargs["modelInvocationType"] = self.invocation_type
        if self.timeout_hours is not None:
            kwargs["timeoutDurationInHours"] = self.timeout_hours
        if self.tags:
            kwargs["tags"] = [{"key": k, "value": v} for k, v in self.tags.items()]
        return kwargs


class Orchestrator:
    """Runs the jobs of one run to their end; see the module docstring."""

    def __init__(
        self,
        bedrock: Any,
        spec: SubmitSpec,
        jobs: list[JobState],
        *,
        max_concurrent_jobs: int,
        poll_interval: float,
        max_poll_interval: float,
        on_change: Callable[[str | None], None],
        on_job_final: Callable[[JobState], Awaitable[None]],
        on_submitted: Callable[[JobState], Awaitable[None]] | None = None,
    ) -> None:
        self.bedrock = bedrock
        self.spec = spec
        self.jobs = jobs
        self.max_concurrent_jobs = max_concurrent_jobs
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.on_change = on_change
        self.on_job_final = on_job_final
        self.on_submitted = on_submitted
        self.stop_requested = asyncio.Event()
        self.polls = 0
        self.cap = max_concurrent_jobs
        """The concurrency cap in force: lowered when Bedrock's quota is hit (other runs
        share it), raised again by one after each poll that sees a job of the run change,
        and at least once per ``max_poll_interval`` while none does (the other runs' jobs
        may end while the run's own sit Scheduled for hours), up to ``max_concurrent_jobs``."""
        self._cap_moved_at = 0.0
        """When the cap last moved (loop time)."""
        self.failure: JobState | None = None
        """The first job that ended Failed: the run stops early."""
        self._stop_sent = False
        self._want_submit = asyncio.Event()
        """Set when a job is staged, a slot frees or a stop is asked for: the submitter acts."""
        self._submitting = False
        self._wake = asyncio.Event()
        """Set to have the poller look again before its next poll is due."""
        self._collecting: dict[str, asyncio.Future[None]] = {}
        self._to_collect: dict[str, JobState] = {}
        """Jobs seen ending, handed on once the submissions they allow are sent."""
        self._seen_at = 0.0
        """When the last poll saw the jobs (monotonic, the middle of its list call)."""
        self._anchors: dict[str, tuple[float, int]] = {}
        """Per InProgress job: when a poll first saw it with records done, and how many."""
        self._etas: dict[str, float] = {}
        """Per InProgress job: when it should end at the pace of its records (monotonic)."""
        self._last_processed: dict[str, int] = {}
        self._submit_times: dict[str, dt.datetime] = {}
        """Per job ARN: its submit time as Bedrock gave it (see _list_after)."""
        self._latest_submit: dt.datetime | None = None
        # Control-plane calls get threads of their own: staging and collecting keep the
        # loop's default executor busy, and a poll or a submission must not queue behind them.
        # A wave of freed slots is refilled with one create call per slot, side by side.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(max(8, max_concurrent_jobs), 32), thread_name_prefix="bedrock-control"
        )

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Release the control-plane threads (the run is over)."""
        self._executor.shutdown(wait=False)

    def kick(self) -> None:
        """Look again now (a job was staged, or a stop was asked for)."""
        self._want_submit.set()
        self._wake.set()

    def request_stop(self) -> None:
        self.stop_requested.set()
        self.kick()

    def pending(self) -> list[JobState]:
        return [j for j in self.jobs if j.status == PENDING]

    async def run(self) -> None:
        """Run every job to its end.  Two tasks share the work: one submits (as soon as a
        job is staged or a poll sees a slot free, never behind a poll in flight), the other
        polls; each job that ends is handed to ``on_job_final`` beside them, once the
        submissions it made possible are sent."""
        await self._call(self._adopt)
        self._want_submit.set()
        submitting = asyncio.ensure_future(self._keep_submitting())
        try:
            await self._keep_polling(submitting)
        finally:
            if not submitting.done():
                submitting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await submitting

    async def _keep_submitting(self) -> None:
        """Submit (or stop) whenever asked to, then hand the ended jobs to collection."""
        try:
            while True:
                await self._want_submit.wait()
                self._want_submit.clear()
                self._submitting = True
                try:
                    if self.stop_requested.is_set():
                        if not self._stop_sent:
                            await self._stop_active()
                    else:
                        await self._submit_ready()
                finally:
                    self._submitting = False
                    self._launch_collects()
                    self._wake.set()  # the poller looks again (is the run over?)
        finally:
            self._wake.set()  # an error here ends the run: the poller must see it

    async def _keep_polling(self, submitting: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        interval = self.poll_interval
        polled_at = loop.time()
        while True:
            self._wake.clear()
            if submitting.done():
                submitting.result()  # the submitter's error (it never ends otherwise)
                return
            waiting = [] if self.stop_requested.is_set() else self.pending()
            busy = self._submitting or self._want_submit.is_set()
            if not busy and not waiting and not any(j.active for j in self.jobs):
                self._launch_collects()
                await asyncio.gather(*self._collecting.values())
                return
            # Polls keep their cadence: the time a poll took counts in the interval (a freed
            # slot is seen within one interval).  A job whose records say it ends before the
            # next poll gets a poll just after its end (see _next_poll).
            wait = self._next_poll(polled_at + interval, interval) - loop.time()
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue  # woken early (a stop, a submission round over) or on time
            polled_at = loop.time()
            try:
                changed = await self._poll()
            except Exception as exc:  # botocore has retried already: note it, poll again
                self.on_change(f"Polling failed ({describe_error(exc)}); trying again.")
                interval = min(interval * 1.5, self.max_poll_interval)
                continue
            crash_point("polled")
            for job in changed:
                if job.status == "Failed" and self.failure is None:
                    self.failure = job
                    self.request_stop()
                if job.final and not job.collected and job.name not in self._collecting:
                    self._to_collect[job.name] = job
            if self.cap < self.max_concurrent_jobs and (
                changed or polled_at - self._cap_moved_at >= self.max_poll_interval
            ):
                self.cap += 1
                self._cap_moved_at = polled_at
            waiting_for_slot = not self.stop_requested.is_set() and any(
                j.staged for j in self.pending()
            )
            if self._to_collect:
                # a slot is free: the submitter fills it first, then starts the collection
                self._want_submit.set()
            elif waiting_for_slot and sum(j.active for j in self.jobs) < self.cap:
                # a slot under the cap is free with no job of the run ending to bring the
                # submitter back (a create refused for the quota or throttling, the cap
                # raised): try again at the polls' pace
                self._want_submit.set()
            self.on_change(None)
            # Back off while nothing changes, but not while staged jobs wait for a slot: a
            # freed slot is then seen within one poll_interval.
            interval = (
                self.poll_interval
                if changed or waiting_for_slot
                else min(interval * 1.5, self.max_poll_interval)
            )

    def _launch_collects(self) -> None:
        """Hand the ended jobs to ``on_job_final``, beside the loop."""
        for name, job in self._to_collect.items():
            if name not in self._collecting:
                self._collecting[name] = asyncio.ensure_future(self.on_job_final(job))
        self._to_collect.clear()

    def _next_poll(self, regular: float, interval: float) -> float:
        """When to poll next (monotonic): at ``regular``, or just after the earliest end
        that the jobs' progress predicts, if that comes first.  A job that had not ended
        at the first poll after its predicted end (a prediction is a few records off) is
        polled every tenth of an interval during one interval; after that it is left to
        the regular polls."""
        due = regular
        for eta in self._etas.values():
            if eta > self._seen_at:
                due = min(due, eta + interval / 20)
            elif self._seen_at - eta < interval:
                due = min(due, self._seen_at + interval / 10)
        return due

    def _predict(self, job: JobState, seen_at: float) -> None:
        """Estimate when ``job`` ends from the pace of its processed records."""
        if job.status != "InProgress" or job.total <= 0 or job.processed <= 0:
            self._etas.pop(job.name, None)
            return
        first_at, first = self._anchors.setdefault(job.name, (seen_at, job.processed))
        if job.processed == self._last_processed.get(job.name):
            return  # no news: a job past its predicted end waits for the regular polls
        self._last_processed[job.name] = job.processed
        if job.processed > first and seen_at > first_at:
            pace = (job.processed - first) / (seen_at - first_at)
            # a count of records done lags the work by half a record on average
            remaining = max(job.total - job.processed - 0.5, 0.0)
            self._etas[job.name] = seen_at + remaining / pace

    def _adopt(self) -> None:
        """Find jobs of this run that Bedrock already has (created before a crash, before
        the journal could record them), so that they are watched, not submitted again."""
        unknown = {j.name: j for j in self.jobs if j.arn is None}
        if not unknown:
            return
        summaries = self._list()
        self._note_submit_times(summaries)
        for summary in summaries:
            job = unknown.get(summary.get("jobName", ""))
            if job is not None:
                job.arn = summary["jobArn"]
                _update(job, summary)
                job.submitted_at = job.submitted_at or time.time()

    def _list(self, after: dt.datetime | None = None) -> list[dict[str, Any]]:
        """The run's jobs (submitted after ``after``, when given), every page."""
        found: list[dict[str, Any]] = []
        paginator = self.bedrock.get_paginator("list_model_invocation_jobs")
        since = {} if after is None else {"submitTimeAfter": after}
        for page in paginator.paginate(nameContains=self.spec.run_id, maxResults=1000, **since):
            found.extend(page.get("invocationJobSummaries", []))
        return found

    def _note_submit_times(self, summaries: Any) -> None:
        for summary in summaries:
            submitted = summary.get("submitTime")
            if isinstance(submitted, dt.datetime):
                self._submit_times[summary["jobArn"]] = submitted
                if self._latest_submit is None or submitted > self._latest_submit:
                    self._latest_submit = submitted

    def _list_after(self, arns: list[str]) -> dt.datetime | None:
        """The ``submitTimeAfter`` bound that leaves out jobs ended long ago, so that a poll
        reads the jobs still running (and a few before them), not the whole run: the
        earliest Bedrock submit time of the watched jobs, less a margin.  A job no list has
        shown yet was created after the last list ran, so after every submit time seen so
        far.  A job the bound would leave out anyway is asked for alone (see _fetch)."""
        if not arns or self._latest_submit is None:
            return None
        earliest = min(self._submit_times.get(arn, self._latest_submit) for arn in arns)
        return earliest - LIST_MARGIN

    async def _submit_ready(self) -> None:
        """Create jobs for the free slots, side by side (a wave of freed slots is refilled
        in the time of one call, not one call per slot)."""
        free = self.cap - sum(j.active for j in self.jobs)
        batch = [j for j in self.pending() if j.staged][: max(free, 0)]
        if not batch:
            return
        loop = asyncio.get_running_loop()
        create = self.bedrock.create_model_invocation_job
        calls = [  # in the threads at once, not on the loop's next turn
            loop.run_in_executor(self._executor, functools.partial(create, **self.spec.request(j)))
            for j in batch
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        fatal: tuple[JobState, BaseException] | None = None
        quota = False
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                code = error_code(outcome)
                if code == "ServiceQuotaExceededException":
                    quota = True
                elif code in RETRYABLE_CODES:
                    self.on_change(f"Submitting {job.name} failed ({code}); trying again.")
                elif fatal is None:
                    fatal = (job, outcome)
                continue
            job.arn = outcome["jobArn"]
            job.status = "Submitted"
            job.submitted_at = time.time()
            if self.on_submitted is not None:
                await self.on_submitted(job)
        if quota:
            self.cap = max(1, sum(j.active for j in self.jobs))
            self._cap_moved_at = loop.time()
            self.on_change(
                "Bedrock's concurrent-job quota is reached (other runs share it); "
                f"waiting for a slot, {self.cap} job(s) at a time for now."
            )
        self.on_change(None)
        if fatal is not None:  # after recording the jobs that were created
            job, exc = fatal
            raise BatchRunError(f"Creating job {job.name} failed: {describe_error(exc)}") from exc

    async def _poll(self) -> list[JobState]:
        """Refresh every submitted job with one paginated list call; return the changed.
        The call runs in a thread; the jobs are updated here, on the loop."""
        watched = [(job, job.arn) for job in self.jobs if job.arn is not None and not job.final]
        self.polls += 1
        arns = [arn for _, arn in watched]
        seen, seen_at = await self._call(self._fetch, arns, self._list_after(arns))
        self._seen_at = seen_at
        self._note_submit_times(seen.values())
        changed = []
        for job, arn in watched:
            summary = seen.get(arn)
            if summary is not None and _update(job, summary):
                changed.append(job)
            self._predict(job, seen_at)
        return changed

    def _fetch(
        self, arns: list[str], after: dt.datetime | None
    ) -> tuple[dict[str, dict[str, Any]], float]:
        """The run's job summaries by ARN (a job missing from the list, as eventual
        consistency allows, is asked for alone) and when the list was taken (monotonic,
        the middle of the call)."""
        started = time.monotonic()
        seen = {summary["jobArn"]: summary for summary in self._list(after)}
        seen_at = (started + time.monotonic()) / 2
        for arn in arns:
            if arn not in seen:
                seen[arn] = self.bedrock.get_model_invocation_job(jobIdentifier=arn)
        return seen, seen_at

    async def _stop_active(self) -> None:
        self._stop_sent = True
        for job in self.jobs:
            if job.arn and job.status in ("Submitted", "Validating", "Scheduled", "InProgress"):
                try:
                    await self._call(self.bedrock.stop_model_invocation_job, jobIdentifier=job.arn)
                except Exception as exc:
                    if error_code(exc) not in ("ConflictException", "ValidationException"):
                        raise
        self.on_change("Stopping the run's jobs.")


def _update(job: JobState, summary: dict[str, Any]) -> bool:
    before = replace(job)
    job.status = summary.get("status", job.status)
    job.message = summary.get("message") or job.message
    job.total = summary.get("totalRecordCount", job.total) or job.total
    job.processed = summary.get("processedRecordCount", job.processed) or job.processed
    job.success = summary.get("successRecordCount", job.success) or job.success
    job.errors = summary.get("errorRecordCount", job.errors) or job.errors
    submitted = summary.get("submitTime")
    if submitted is not None:  # Bedrock's own record, on the clock that gives endTime
        job.submitted_at = submitted.timestamp()
    if job.final and job.ended_at is None:
        end = summary.get("endTime")
        job.ended_at = end.timestamp() if end is not None else time.time()
    return (job.status, job.processed, job.errors, job.success) != (
        before.status,
        before.processed,
        before.errors,
        before.success,
    )


def timestamp(seconds: float | None) -> Any:
    """Epoch seconds as a UTC ``pd.Timestamp`` (``NaT`` for None)."""
    import pandas as pd

    return pd.NaT if seconds is None else pd.Timestamp(seconds, unit="s", tz="UTC")


RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "InternalServerException", "ServiceUnavailableException"}
)
