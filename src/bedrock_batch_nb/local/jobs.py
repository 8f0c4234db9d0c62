"""Batch jobs: the store, the clock that moves them through their states, and the processing.

Every job follows a configurable clock (:class:`JobTimings`): Submitted -> Validating
(input read from S3 and checked, records answered) -> Scheduled -> InProgress (counts grow
with time) -> Completed, or Failed / Stopping -> Stopped / PartiallyCompleted / Expired.
A clock thread wakes when the next job is due and hands each due job to a thread pool on
its own (one job's S3 reading or writing never holds up another's transition). A state's
clock starts when the previous one was due, not when the worker got to it, so a job lasts
what its timings say unless its own work takes longer. Outputs land in S3 in Bedrock's layout:
``<output s3Uri>/<jobId>/<input file name>.out`` plus ``manifest.json.out``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import json
import logging
import random
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, validation
from .faults import Faults
from .models import ACCOUNT, REGION, resolve_model, respond
from .schemas import CONVERSE, SchemaError, check_body

log = logging.getLogger(__name__)

ACTIVE = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
FINAL = ("Completed", "Failed", "Stopped", "PartiallyCompleted", "Expired")
STATUSES = ACTIVE + FINAL

JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
S3_URI = re.compile(
    r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?"
)
TOKEN = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?")
JOB_IDENTIFIER = re.compile(
    r"((arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})"
)
GIB = 1024**3


@dataclass
class JobTimings:
    """Seconds spent in each state; fast defaults so dozens of jobs finish in seconds."""

    submitted: float = 0.05
    validating: float = 0.05
    scheduled: float = 0.05
    records_per_second: float = 5000.0
    min_in_progress: float = 0.1
    stopping: float = 0.05
    tick: float = 0.01
    """The longest the clock sleeps (it wakes earlier when a job is due): how soon a
    change of these timings, or of an in-progress slot, is noticed."""


@dataclass
class JobLimits:
    """Bedrock's limits. The unconfirmed ones (see the facts file) are only defaults."""

    min_records: int = 100
    max_records: int = 50_000
    max_file_bytes: int = 1 * GIB
    max_job_bytes: int = 5 * GIB
    concurrent_jobs_per_model: int = 20
    """Submitted + Validating + Scheduled + InProgress + Stopping jobs per model."""
    in_progress_slots_per_model: int | None = None
    """When set, Scheduled jobs wait for one of this many InProgress slots per model."""
    unique_job_names: bool = True


@dataclass
class Stats:
    """What the emulator saw; read it in process or at ``GET /_local/stats``."""

    create_calls: int = 0
    jobs_created: int = 0
    get_calls: int = 0
    list_calls: int = 0
    stop_calls: int = 0
    foundation_model_calls: int = 0
    inference_profile_calls: int = 0
    invoke_calls: int = 0
    converse_calls: int = 0
    count_tokens_calls: int = 0
    throttled_calls: int = 0
    records_processed: int = 0
    records_succeeded: int = 0
    records_failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    active_jobs: int = 0
    max_active_jobs: int = 0
    active_jobs_per_model: dict[str, int] = field(default_factory=dict)
    max_active_jobs_per_model: dict[str, int] = field(default_factory=dict)
    jobs_by_status: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()

    def bump(self, name: str, by: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + by)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                k: (dict(v) if isinstance(v, dict) else v)
                for k, v in vars(self).items()
                if k != "lock"
            }

    def reset(self) -> None:
        fresh = Stats()
        with self.lock:
            for k, v in vars(fresh).items():
                if k != "lock":
                    setattr(self, k, v)


@dataclass
class _Record:
    file_index: int
    record_id: str
    model_input: Any


@dataclass
class _Result:
    file_index: int
    record_id: str
    line: dict[str, Any]
    ok: bool
    input_tokens: int
    output_tokens: int


@dataclass
class Job:
    arn: str
    job_id: str
    name: str
    model_id: str
    model_key: str
    family: str
    role_arn: str
    input_config: dict[str, Any]
    output_config: dict[str, Any]
    client_token: str | None
    timeout_hours: int
    invocation_type: str
    submit_time: dt.datetime
    fate: str | None
    status: str = "Submitted"
    message: str | None = None
    last_modified: dt.datetime | None = None
    end_time: dt.datetime | None = None
    entered: float = field(default_factory=time.monotonic)
    files: list[str] = field(default_factory=list)
    records: list[_Record] = field(default_factory=list)
    final_counts: dict[str, int] | None = None
    """The counts once the job is over and its records and output lines are let go (a
    2.2-million-record run would otherwise keep every parsed request and answer)."""
    results: list[_Result] = field(default_factory=list)
    processed: int = 0
    """Records done, as of the last transition (while InProgress, see :meth:`done_now`)."""
    in_progress_seconds: float = 0.0
    target: int = 0  # records this job gets done before it ends
    written: int | None = None
    """Records whose output lines are in S3 (None: nothing written yet)."""

    @property
    def input_uri(self) -> str:
        return str(self.input_config["s3InputDataConfig"]["s3Uri"])

    @property
    def output_uri(self) -> str:
        return str(self.output_config["s3OutputDataConfig"]["s3Uri"])

    def done_now(self) -> int:
        """Records done by now: they grow with the time spent InProgress, up to ``target``."""
        if self.status != "InProgress" or self.in_progress_seconds <= 0:
            return self.processed
        share = min(1.0, (time.monotonic() - self.entered) / self.in_progress_seconds)
        return max(self.processed, min(self.target, int(len(self.results) * share)))

    def in_progress_due(self) -> float:
        """When an InProgress job has done its ``target`` records (and ends)."""
        total = len(self.results)
        share = self.target / total if total else 0.0
        return self.entered + self.in_progress_seconds * share

    def counts(self, processed: int | None = None) -> dict[str, int]:
        if self.final_counts is not None:
            return self.final_counts
        done = self.results[: self.done_now() if processed is None else processed]
        ok = sum(1 for r in done if r.ok)
        return {
            "totalRecordCount": len(self.records),
            "processedRecordCount": len(done),
            "successRecordCount": ok,
            "errorRecordCount": len(done) - ok,
        }

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "modelId": self.model_id,
            "roleArn": self.role_arn,
            "status": self.status,
            "submitTime": _iso(self.submit_time),
            "lastModifiedTime": _iso(self.last_modified or self.submit_time),
            "inputDataConfig": self.input_config,
            "outputDataConfig": self.output_config,
            "timeoutDurationInHours": self.timeout_hours,
            "jobExpirationTime": _iso(self.submit_time + dt.timedelta(hours=self.timeout_hours)),
            "modelInvocationType": self.invocation_type,
            **self.counts(),
        }
        if self.client_token:
            out["clientRequestToken"] = self.client_token
        if self.message:
            out["message"] = self.message
        if self.end_time:
            out["endTime"] = _iso(self.end_time)
        return out


def _now() -> dt.datetime:
    """Now, to the millisecond that the API shows (so time filters round-trip exactly)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: str) -> dt.datetime:
    """A timestamp as botocore sends it in a query string (ISO 8601) or epoch seconds."""
    try:
        return dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise validation(f"Invalid timestamp: {value}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def split_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    return bucket, key


def _new_job_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


class JobStore:
    """Every job of the emulator, and the worker thread that moves them along."""

    def __init__(
        self,
        s3_client: Callable[[], Any],
        *,
        timings: JobTimings,
        limits: JobLimits,
        faults: Faults,
        stats: Stats,
    ) -> None:
        self._s3_factory = s3_client
        self._s3: Any = None
        self.timings = timings
        self.limits = limits
        self.faults = faults
        self.stats = stats
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._tokens: dict[str, str] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        """Set when a job is created or stopped: the clock looks again at once."""
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        """Where jobs advance side by side while the worker runs (see :meth:`_dispatch`)."""
        self._busy: set[str] = set()
        self._write_seconds = 0.05
        """How long writing a job's output takes lately (a moving average)."""
        """Jobs being advanced by a pool thread right now (never two threads per job)."""

    # --- worker --------------------------------------------------------------------------

    def start(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="local-bedrock-job"
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="local-bedrock-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                delay = self._dispatch()
            except Exception:  # pragma: no cover - keep the worker alive whatever happens
                log.exception("local bedrock worker failed")
                delay = self.timings.tick
            self._wake.wait(delay)

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._tokens.clear()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no job is active (for tests); True when idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(j.status in ACTIVE for j in self._jobs.values()):
                    return True
            time.sleep(self.timings.tick)
        return False

    # --- API -----------------------------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> str:
        self.stats.bump("create_calls")
        name = body.get("jobName")
        role = body.get("roleArn")
        model_id = body.get("modelId")
        token = body.get("clientRequestToken")
        for key in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
            if body.get(key) in (None, "", {}):
                raise validation(
                    f"1 validation error detected: Value null at '{key}' failed to "
                    "satisfy constraint: Member must not be null"
                )
        if not isinstance(name, str) or len(name) > 63 or not JOB_NAME.fullmatch(name):
            raise validation(
                f"1 validation error detected: Value '{name}' at 'jobName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: "
                r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63} and length <= 63"
            )
        if not isinstance(role, str) or not ROLE_ARN.fullmatch(role):
            raise validation(
                f"1 validation error detected: Value '{role}' at 'roleArn' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: "
                "arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+"
            )
        if token is not None and (not isinstance(token, str) or not TOKEN.fullmatch(token)):
            raise validation(
                f"Value '{token}' at 'clientRequestToken' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern"
            )
        input_config = _s3_config(
            body.get("inputDataConfig"), "inputDataConfig", "s3InputDataConfig"
        )
        output_config = _s3_config(
            body.get("outputDataConfig"), "outputDataConfig", "s3OutputDataConfig"
        )
        fmt = input_config["s3InputDataConfig"].get("s3InputFormat", "JSONL")
        if fmt != "JSONL":
            raise validation(
                f"Value '{fmt}' at 'inputDataConfig.s3InputDataConfig."
                "s3InputFormat' failed to satisfy constraint: Member must satisfy "
                "enum value set: [JSONL]"
            )
        timeout = body.get("timeoutDurationInHours", 168)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 24 <= timeout <= 168:
            raise validation(
                f"1 validation error detected: Value '{timeout}' at 'timeoutDurationInHours' "
                "failed to satisfy constraint: Member must be between 24 and 168"
            )
        invocation_type = body.get("modelInvocationType", "InvokeModel")
        if invocation_type not in ("InvokeModel", "Converse"):
            raise validation(
                f"Value '{invocation_type}' at 'modelInvocationType' failed to "
                "satisfy constraint: Member must satisfy enum value set: "
                "[InvokeModel, Converse]"
            )
        model = resolve_model(str(model_id))
        if model is None:
            raise validation(f"The provided model identifier is invalid: {model_id}")
        if model.output == "EMBEDDING" and invocation_type == "Converse":
            raise validation(f"The model {model_id} does not support the Converse API.")
        family = CONVERSE if invocation_type == "Converse" else model.family

        with self._lock:
            if token and token in self._tokens:
                return self._tokens[token]
            if self.faults.take_quota_exceeded() or self._active_for(model.model_id) >= (
                self.limits.concurrent_jobs_per_model
            ):
                raise ApiError(
                    "ServiceQuotaExceededException",
                    "You have reached the maximum number of batch inference jobs that can be "
                    f"submitted or in progress for model {model.model_id} "
                    f"({self.limits.concurrent_jobs_per_model}). Wait for a job to finish.",
                )
            if self.limits.unique_job_names and any(j.name == name for j in self._jobs.values()):
                raise ApiError(
                    "ConflictException",
                    f"A batch inference job with the name {name} already exists.",
                )
            job_id = _new_job_id()
            while job_id in self._jobs:  # pragma: no cover - 36**12 ids
                job_id = _new_job_id()
            now = _now()
            job = Job(
                arn=f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-invocation-job/{job_id}",
                job_id=job_id,
                name=name,
                model_id=str(model_id),
                model_key=model.model_id,
                family=family,
                role_arn=role,
                input_config=input_config,
                output_config=output_config,
                client_token=token,
                timeout_hours=timeout,
                invocation_type=invocation_type,
                submit_time=now,
                last_modified=now,
                fate=self.faults.job_fate(name),
            )
            self._jobs[job_id] = job
            if token:
                self._tokens[token] = job.arn
            self.stats.bump("jobs_created")
            self._count_status(job, None, "Submitted")
        self._wake.set()
        return job.arn

    def get(self, identifier: str) -> dict[str, Any]:
        self.stats.bump("get_calls")
        with self._lock:
            return self._find(identifier).describe()

    def stop(self, identifier: str) -> None:
        self.stats.bump("stop_calls")
        with self._lock:
            job = self._find(identifier)
            if job.status in FINAL:
                raise validation(
                    f"The job {job.arn} is in the terminal state {job.status} and can't be stopped."
                )
            if job.status != "Stopping":
                job.processed = job.done_now()  # what it had done when asked to stop
                self._set_status(job, "Stopping")
        self._wake.set()

    def list_jobs(self, query: Mapping[str, str]) -> dict[str, Any]:
        self.stats.bump("list_calls")
        status = query.get("statusEquals")
        if status is not None and status not in STATUSES:
            raise validation(f"Value '{status}' at 'statusEquals' failed to satisfy constraint")
        name_part = query.get("nameContains")
        after = parse_time(query["submitTimeAfter"]) if "submitTimeAfter" in query else None
        before = parse_time(query["submitTimeBefore"]) if "submitTimeBefore" in query else None
        sort_by = query.get("sortBy", "CreationTime")
        if sort_by != "CreationTime":
            raise validation(f"Value '{sort_by}' at 'sortBy' failed to satisfy constraint")
        order = query.get("sortOrder", "Descending")
        if order not in ("Ascending", "Descending"):
            raise validation(f"Value '{order}' at 'sortOrder' failed to satisfy constraint")
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if (status is None or j.status == status)
                and (not name_part or name_part in j.name)
                and (after is None or j.submit_time > after)
                and (before is None or j.submit_time < before)
            ]
            jobs.sort(key=lambda j: (j.submit_time, j.job_id), reverse=order == "Descending")
            return paged(jobs, query, "invocationJobSummaries", lambda j: j.describe())

    def job(self, identifier: str) -> Job:
        with self._lock:
            return self._find(identifier)

    def _find(self, identifier: str) -> Job:
        if not JOB_IDENTIFIER.fullmatch(identifier):
            raise validation(
                f"1 validation error detected: Value '{identifier}' at 'jobIdentifier' failed "
                "to satisfy constraint: Member must satisfy regular expression pattern"
            )
        job = self._jobs.get(identifier.rsplit("/", 1)[-1])
        if job is None:
            raise ApiError(
                "ResourceNotFoundException", f"The specified job {identifier} could not be found."
            )
        return job

    def _active_for(self, model_key: str) -> int:
        return sum(
            1 for j in self._jobs.values() if j.model_key == model_key and j.status in ACTIVE
        )

    # --- status bookkeeping ----------------------------------------------------------------

    def _set_status(
        self, job: Job, status: str, message: str | None = None, *, at: float | None = None
    ) -> None:
        """Move ``job`` to ``status``; its clock in the new state starts ``at`` (monotonic;
        now by default), the moment the change was due."""
        old = job.status
        job.status = status
        now = time.monotonic()
        job.entered = now if at is None else min(at, now)
        job.last_modified = _now()
        if message is not None:
            job.message = message
        if status in FINAL:
            job.end_time = job.last_modified
        self._count_status(job, old, status)

    def _count_status(self, job: Job, old: str | None, new: str) -> None:
        s = self.stats
        with s.lock:
            if old is not None:
                s.jobs_by_status[old] = s.jobs_by_status.get(old, 0) - 1
                if s.jobs_by_status[old] == 0:
                    del s.jobs_by_status[old]
            s.jobs_by_status[new] = s.jobs_by_status.get(new, 0) + 1
            was_active = old in ACTIVE
            is_active = new in ACTIVE
            if was_active != is_active:
                delta = 1 if is_active else -1
                s.active_jobs += delta
                per = s.active_jobs_per_model
                per[job.model_key] = per.get(job.model_key, 0) + delta
                s.max_active_jobs = max(s.max_active_jobs, s.active_jobs)
                s.max_active_jobs_per_model[job.model_key] = max(
                    s.max_active_jobs_per_model.get(job.model_key, 0), per[job.model_key]
                )

    # --- the clock -------------------------------------------------------------------------

    def _due(self, job: Job) -> float:
        """When ``job`` (active) is next due to move on (monotonic)."""
        t = self.timings
        if job.status == "InProgress":
            end = job.in_progress_due()
            if job.written is None:  # its output goes to S3 just before it ends
                return max(job.entered, end - self._write_lead())
            return end
        wait = {
            "Submitted": t.submitted,
            "Validating": t.validating,
            "Scheduled": t.scheduled,
            "Stopping": t.stopping,
        }[job.status]
        return job.entered + wait

    def _dispatch(self) -> float:
        """Hand every due job to the pool (or advance it here without one); return how long
        to sleep before the next is due (at most ``timings.tick``)."""
        now = time.monotonic()
        due: list[Job] = []
        wake = now + self.timings.tick
        with self._lock:
            for job in self._jobs.values():
                if job.status not in ACTIVE or job.job_id in self._busy:
                    continue
                when = self._due(job)
                if when <= now:
                    self._busy.add(job.job_id)
                    due.append(job)
                else:
                    wake = min(wake, when)
        pool = self._pool
        for job in due:
            if pool is None:
                self._advance_safely(job)
            else:
                pool.submit(self._advance_safely, job)
        return max(0.0, wake - time.monotonic())

    def _advance_safely(self, job: Job) -> None:
        try:
            self._advance(job)
        except Exception as exc:
            log.exception("job %s failed inside the emulator", job.job_id)
            with self._lock:
                if job.status in ACTIVE:
                    self._set_status(job, "Failed", f"Internal error: {exc}")
        finally:
            with self._lock:
                self._busy.discard(job.job_id)
            self._wake.set()  # its next state may be due soon

    def _advance(self, job: Job) -> None:
        with self._lock:
            status = job.status
            due = self._due(job) if status in ACTIVE else 0.0
        if status not in ACTIVE or time.monotonic() < due:
            return
        if status == "Submitted":
            with self._lock:
                if job.status != "Submitted":
                    return
                self._set_status(job, "Validating", at=due)
            problem = self._load_input(job)
            if problem is None and job.fate == "Failed":
                problem = "Local fault: the job failed (injected by the local emulator)."
            results = self._answer(job) if problem is None else []
            with self._lock:
                if job.status != "Validating":
                    return
                if problem is not None:
                    self._set_status(job, "Failed", problem)
                else:
                    job.results = results
        elif status == "Validating":
            with self._lock:
                if job.status == "Validating":
                    self._set_status(job, "Scheduled", at=due)
        elif status == "Scheduled":
            with self._lock:
                slots = self.limits.in_progress_slots_per_model
                busy = sum(
                    1
                    for j in self._jobs.values()
                    if j.model_key == job.model_key and j.status == "InProgress"
                )
                if job.status == "Scheduled" and (slots is None or busy < slots):
                    # with slots, it starts when one freed (now), not when it was due
                    self._start_processing(job, at=due if slots is None else None)
        elif status == "InProgress":
            # Results appear in S3 while a job is InProgress: its output is written just
            # before its end, so that it ends when its timings say, not a write later.
            if job.written is None and not self._write_or_fail(job, job.target, "InProgress"):
                return
            with self._lock:
                if job.status != "InProgress" or time.monotonic() < job.in_progress_due():
                    return
                job.processed = job.target
            self._progress_done(job)
        elif status == "Stopping":
            self._finish(job, "Stopped", "The job was stopped.")

    def _start_processing(self, job: Job, *, at: float | None) -> None:
        total = len(job.results)
        if job.fate in ("Expired", "PartiallyCompleted"):
            job.target = int(total * min(max(self.faults.partial_fraction, 0.0), 1.0))
        else:
            job.target = total
        job.in_progress_seconds = max(
            self.timings.min_in_progress, total / max(self.timings.records_per_second, 1e-9)
        )
        self._set_status(job, "InProgress", at=at)

    def _progress_done(self, job: Job) -> None:
        if job.fate == "Expired":
            self._finish(
                job,
                "Expired",
                "The job did not finish within its timeout of "
                f"{job.timeout_hours} hours; the records done so far are in S3.",
            )
        elif job.fate == "PartiallyCompleted":
            self._finish(job, "PartiallyCompleted", "Not all records could be processed in time.")
        else:
            self._finish(job, "Completed", None)

    def _write_lead(self) -> float:
        """How long before its end a job's output is written: enough for a write as slow
        as lately, with room to spare (jobs often end together and write side by side)."""
        return min(1.0, 0.05 + 3 * self._write_seconds)

    def _write_or_fail(self, job: Job, processed: int, expected: str) -> bool:
        """Write the output of ``job``'s first ``processed`` records; False (and the job
        Failed) when S3 refuses."""
        try:
            self._write_output(job, processed)
        except Exception as exc:
            with self._lock:
                if job.status == expected:
                    self._set_status(
                        job, "Failed", f"Unable to write the output to {job.output_uri}: {exc}"
                    )
            return False
        return True

    def _finish(self, job: Job, status: str, message: str | None) -> None:
        expected = "Stopping" if status == "Stopped" else "InProgress"
        with self._lock:
            if job.status != expected:
                return
        if job.written != job.processed and not self._write_or_fail(job, job.processed, expected):
            return
        done = job.results[: job.processed]
        with self._lock:
            if job.status != expected:  # stopped while its output was written: it stops
                return
            self._set_status(job, status, message)
            job.final_counts = job.counts(job.processed)
            job.records, job.results = [], []  # written to S3: what describes the job stays
        s = self.stats
        with s.lock:
            s.records_processed += len(done)
            s.records_succeeded += sum(1 for r in done if r.ok)
            s.records_failed += sum(1 for r in done if not r.ok)
            s.input_tokens += sum(r.input_tokens for r in done)
            s.output_tokens += sum(r.output_tokens for r in done)

    # --- S3 input and output ---------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                self._s3 = self._s3_factory()
            return self._s3

    def _load_input(self, job: Job) -> str | None:
        """Read and check the job's JSONL input; return Bedrock's failure message or None."""
        s3 = self._client()
        bucket, key = split_s3_uri(job.input_uri)
        out_bucket, _ = split_s3_uri(job.output_uri)
        try:
            s3.head_bucket(Bucket=out_bucket)
        except Exception:
            return f"The output S3 location {job.output_uri} is not accessible."
        objects: list[tuple[str, str, int]] = []  # (key, name, size)
        opened: dict[str, Any] = {}  # a single file's body, opened (one request, not two)
        try:
            if key and not key.endswith("/"):
                try:
                    got = s3.get_object(Bucket=bucket, Key=key)
                    opened[key] = got["Body"]
                    objects.append((key, key.rsplit("/", 1)[-1], int(got["ContentLength"])))
                except Exception:
                    objects = []
            if not objects:
                prefix = key.rstrip("/") + "/" if key else ""
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix
                ):
                    for obj in page.get("Contents", []):
                        if obj["Key"].endswith(".jsonl"):
                            objects.append((obj["Key"], obj["Key"][len(prefix) :], obj["Size"]))
        except Exception:
            return (
                f"Unable to read the input from {job.input_uri}: the S3 location is not accessible."
            )
        if not objects:
            return f"No input files were found at the S3 location {job.input_uri}."
        try:
            return self._read_input(job, bucket, objects, opened)
        finally:
            for body in opened.values():
                body.close()

    def _read_input(
        self, job: Job, bucket: str, objects: list[tuple[str, str, int]], opened: dict[str, Any]
    ) -> str | None:
        total_bytes = 0
        for _key, name, size in objects:
            if size > self.limits.max_file_bytes:
                return (
                    f"The input file {name} is {size} bytes, larger than the maximum input "
                    f"file size of {self.limits.max_file_bytes} bytes."
                )
            total_bytes += size
        if total_bytes > self.limits.max_job_bytes:
            return (
                f"The input is {total_bytes} bytes, larger than the maximum job size of "
                f"{self.limits.max_job_bytes} bytes."
            )
        records: list[_Record] = []
        for index, (obj_key, name, _) in enumerate(objects):
            body = opened.pop(obj_key, None)
            if body is None:
                body = self._client().get_object(Bucket=bucket, Key=obj_key)["Body"]
            with contextlib.closing(body):
                text = body.read().decode("utf-8")
            for lineno, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return (
                        f"Invalid JSONL format in input file {name} at line {lineno}: the "
                        "line is not valid JSON."
                    )
                if not isinstance(record, dict) or "modelInput" not in record:
                    return (
                        f"Invalid JSONL format in input file {name} at line {lineno}: each "
                        "line must be a JSON object with a modelInput field."
                    )
                record_id = record.get("recordId")
                if record_id is None:
                    record_id = _generated_record_id(job.job_id, len(records))
                records.append(_Record(index, str(record_id), record["modelInput"]))
                if len(records) > self.limits.max_records:
                    return (
                        f"The job has more than {self.limits.max_records} records, the "
                        "maximum number of records per batch inference job for this model."
                    )
        if len(records) < self.limits.min_records:
            return (
                f"The job has {len(records)} records, fewer than the minimum of "
                f"{self.limits.min_records} records per batch inference job for this model."
            )
        job.files = [name for _, name, _ in objects]
        job.records = records
        return None

    def _answer(self, job: Job) -> list[_Result]:
        """Every record's output line, in the (shuffled) order the job gets them done."""
        results: list[_Result] = []
        for rec in job.records:
            base = {"recordId": rec.record_id, "modelInput": rec.model_input}
            try:
                check_body(job.family, rec.model_input)
            except SchemaError as exc:
                err = {"errorCode": 400, "errorMessage": str(exc)}
                results.append(
                    _Result(rec.file_index, rec.record_id, {**base, "error": err}, False, 0, 0)
                )
                continue
            if self.faults.record_fails(rec.record_id, json.dumps(rec.model_input), job.job_id):
                err = {
                    "errorCode": 500,
                    "errorMessage": "ModelErrorException: The model failed to process the "
                    "record (injected by the local emulator).",
                }
                results.append(
                    _Result(rec.file_index, rec.record_id, {**base, "error": err}, False, 0, 0)
                )
                continue
            reply = respond(job.family, rec.model_input, job.model_id)
            results.append(
                _Result(
                    rec.file_index,
                    rec.record_id,
                    {**base, "modelOutput": reply.body},
                    True,
                    reply.input_tokens,
                    reply.output_tokens,
                )
            )
        random.Random(job.job_id).shuffle(results)
        return results

    def _write_output(self, job: Job, processed: int) -> None:
        started = time.monotonic()
        s3 = self._client()
        bucket, prefix = split_s3_uri(job.output_uri)
        base = f"{prefix.rstrip('/')}/{job.job_id}/" if prefix.strip("/") else f"{job.job_id}/"
        done = job.results[:processed]
        for index, name in enumerate(job.files):
            lines = []
            for r in done:
                if r.file_index != index or self.faults.drop_line(r.record_id, job.job_id):
                    continue
                text = json.dumps(r.line, ensure_ascii=False)
                if self.faults.corrupt_line(r.record_id, job.job_id):
                    text = text[: len(text) // 2]
                lines.append(text)
            body = "".join(line + "\n" for line in lines).encode("utf-8")
            s3.put_object(Bucket=bucket, Key=f"{base}{name}.out", Body=body)
        if job.files:
            manifest = {
                **job.counts(processed),
                "inputTokenCount": sum(r.input_tokens for r in done),
                "outputTokenCount": sum(r.output_tokens for r in done),
            }
            s3.put_object(
                Bucket=bucket,
                Key=f"{base}manifest.json.out",
                Body=json.dumps(manifest).encode("utf-8"),
            )
        job.written = processed
        took = time.monotonic() - started
        self._write_seconds += 0.2 * (took - self._write_seconds)


def _s3_config(value: Any, field_name: str, member: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get(member), dict):
        raise validation(
            f"1 validation error detected: Value at '{field_name}.{member}' failed "
            "to satisfy constraint: Member must not be null"
        )
    uri = value[member].get("s3Uri")
    if not isinstance(uri, str) or len(uri) > 1024 or not S3_URI.fullmatch(uri):
        raise validation(
            f"1 validation error detected: Value '{uri}' at '{field_name}.{member}.s3Uri' "
            "failed to satisfy constraint: Member must satisfy regular expression pattern: "
            "s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'()."
            "a-z0-9A-Z]+)*)?/?"
        )
    return {member: dict(value[member])}


def paged(
    items: Sequence[Any], query: Mapping[str, str], key: str, describe: Callable[[Any], Any]
) -> dict[str, Any]:
    """The page of ``items`` that ``query``'s ``maxResults`` (1 to 1000, default 1000) and
    ``nextToken`` ask for, under ``key``, each item described; a ``nextToken`` when more
    follow."""
    try:
        max_results = int(query.get("maxResults", "1000"))
    except ValueError as exc:
        raise validation("maxResults must be an integer") from exc
    if not 1 <= max_results <= 1000:
        raise validation(
            "Value at 'maxResults' failed to satisfy constraint: Member must "
            "have value between 1 and 1000"
        )
    start = _decode_token(query["nextToken"]) if "nextToken" in query else 0
    result: dict[str, Any] = {key: [describe(i) for i in items[start : start + max_results]]}
    if start + max_results < len(items):
        result["nextToken"] = _encode_token(start + max_results)
    return result


def _generated_record_id(job_id: str, index: int) -> str:
    digest = hashlib.sha256(f"{job_id}:{index}".encode()).hexdigest()[:11]
    return digest.upper()


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_token(token: str) -> int:
    with contextlib.suppress(ValueError):
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if text.startswith("offset:"):
            return int(text[len("offset:") :])
    raise validation("The provided nextToken is invalid.")
