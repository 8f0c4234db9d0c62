"""One benchmark case, measured in this (fresh) process.

    python benchmarks/cases.py <case> <size> --data-dir DIR [--cap N --job-seconds S]
    python benchmarks/cases.py generate <kind> <size> --data-dir DIR

``kind``: simplecot (Parquet), simplecot-csv, simplecot-jsonl, simplecot-hf, collect, embed.

The last line of stdout is one JSON object: ``stage``, ``rows``, ``seconds``, ``rows_per_s``,
``peak_rss_mib`` (the process's peak RSS during the measured part, ``ru_maxrss`` after the
peak is reset to the RSS after set-up), ``rss_rise_mib`` (that peak minus the RSS after the
imports and set-up, freed memory given back first), ``anon_rise_mib`` (the same for the
anonymous part of the RSS, without mapped files' pages; sampled) and case-specific extras.
``benchmarks/run.py`` runs these, several times each, and reports medians.  Data comes from
``datagen.py`` (run ``generate`` first: making data in the measured process would distort
its memory figures).

Everything that touches the engine sits in the "engine" section just below, so that a
change of the engine's API is fixed in one place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import heapq
import io
import json
import logging
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import datagen
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import reference
from moto import mock_aws
from moto.server import ThreadedMotoServer
from stalls import TICK_S, GcPauses, StallTracer, threshold_s

from bedrock_batch_nb import BatchRun, collecting, prompts, sources, staging, validation
from bedrock_batch_nb import run as run_module
from bedrock_batch_nb.aws import Clients, load_client_models
from bedrock_batch_nb.collecting import Results, collect_job
from bedrock_batch_nb.local import JobTimings, LocalBedrock
from bedrock_batch_nb.models import resolve_adapter
from bedrock_batch_nb.orchestrator import JobState, Orchestrator
from bedrock_batch_nb.progress import ResultSummary
from bedrock_batch_nb.run import give_back_memory

BUCKET = "bedrock-batch-bench"
ROLE_ARN = "arn:aws:iam::123456789012:role/BedrockBatchBench"
RECORDS_PER_JOB = 10_000
"""Records per job when preparing and staging (20 jobs for 200,000 rows)."""

# ---- engine: how each stage is driven (adjust here when the engine's API changes) ---------


def new_run(data: Any, model_id: str, prompt: str | None = None, **options: Any) -> BatchRun:
    options.setdefault("bucket", BUCKET)
    options.setdefault("role_arn", ROLE_ARN)
    return BatchRun(data, model_id, prompt, job_name_prefix="bench", **options)


def prepare(run: BatchRun) -> tuple[Any, int]:
    """Everything before the upload: read, validate, plan the jobs, then render and build
    every job's request lines (as staging does, a job at a time); return the plan and the
    lines' total bytes."""
    run.validate()
    prepared = run._prepared
    total = 0
    for chunk in prepared.chunks:
        total += len(run.record_body(range(chunk.start, chunk.stop)))
    return prepared, total


def stage_all(run: BatchRun, prepared: Any) -> None:
    """Build and upload every job's input file as ``start()`` does (``BatchRun._stage``: built
    in input order, uploaded while the next is built, ``STAGE_CONCURRENCY`` files and
    ``STAGE_BYTES`` held at most)."""
    layout = run.layout
    jobs = [
        JobState(chunk, f"{run.run_id}-{chunk.index:04d}", layout.input_uri(chunk))
        for chunk in prepared.chunks
    ]
    asyncio.run(run._stage(run.clients, jobs, None))


def write_results(frame: pd.DataFrame, path: Path) -> None:
    """The joined results as Parquet on disk, the way the engine writes them."""
    collecting.write_parquet(frame, str(path))


def upload_results(s3: Any, frame: pd.DataFrame, key: str) -> None:
    """The joined results as Parquet on S3, the way ``BatchRun._write_results`` does."""
    collecting.upload_parquet(s3, frame, BUCKET, key, {})


def prepared_summary(prepared: Any, request_bytes: int) -> dict[str, Any]:
    return {"jobs": len(prepared.chunks), "request_mib": round(request_bytes / 2**20, 1)}


# Functions whose time is reported as a breakdown of the prepare stage: (owner, name).
BREAKDOWN = {
    "convert": (sources, "_convert_to_parquet"),  # a big CSV or JSONL file, once
    "gather_selection": (sources, "_write_selection"),  # a shuffled dataset's rows, once
    "stream_dataset": (sources, "_write_streamed"),  # a streamed dataset's rows, once
    "read": (sources.ParquetSource, "read_raw"),
    "check_rows": (validation.ValueChecks, "add"),
    "lengths": (prompts.PromptTemplate, "arrow_lengths"),
    "check_lengths": (validation.LengthChecks, "add"),
    "plan_chunks": (run_module, "plan_chunks"),
    "render": (prompts.PromptTemplate, "arrow_parts"),  # (the join is in build_body)
    "build_body": (staging.RecordBuilder, "body_parts"),
    "put_jsonl": (run_module, "put_jsonl"),
}

# ---- measuring ------------------------------------------------------------------------------


def rss_mib() -> float:
    """The current resident set size (VmRSS)."""
    return status_mib("VmRSS")


def status_mib(field: str) -> float:
    """A memory figure of this process from ``/proc/self/status``, in MiB (NaN elsewhere)."""
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def anon_mib() -> float:
    """The resident memory not backed by a file (RssAnon): what the process allocated,
    without the pages of files it maps (a memory-mapped dataset), which the kernel can
    drop and read again."""
    return status_mib("RssAnon")


def give_back_freed_memory() -> None:
    """Return what set-up freed to the system (glibc keeps freed heap memory for reuse, and
    memory a case reused from it would not count in its rise), as a run does between its
    phases."""
    give_back_memory()


class Meter:
    """Time and memory of the measured part of a case: the peak RSS (``ru_maxrss``), and
    the peak of its anonymous part, sampled every ``ANON_SAMPLE_S``."""

    ANON_SAMPLE_S = 0.01

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.base = 0.0
        self.anon_base = 0.0
        self.anon_peak = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[Meter]:
        gc.collect()
        give_back_freed_memory()
        # Reset the peak to the current RSS, so that set-up (data uploads, ...) is not
        # counted; without Linux's clear_refs the peak is the whole process's.
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.base = rss_mib()
        self.anon_base = self.anon_peak = anon_mib()
        done = threading.Event()

        def sample() -> None:
            while not done.wait(self.ANON_SAMPLE_S):
                self.anon_peak = max(self.anon_peak, anon_mib())

        sampler = threading.Thread(target=sample, name="bench-anon-rss", daemon=True)
        sampler.start()
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            self.seconds = time.perf_counter() - start
            self.cpu_seconds = time.process_time() - cpu
            done.set()
            sampler.join()
            self.anon_peak = max(self.anon_peak, anon_mib())

    def result(self, stage: str, rows: int, **extra: Any) -> dict[str, Any]:
        peak = peak_mib()
        out = {
            "stage": stage,
            "rows": rows,
            "seconds": round(self.seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "rows_per_s": round(rows / self.seconds, 1) if self.seconds else None,
            "peak_rss_mib": round(peak, 1),
            "rss_rise_mib": round(peak - self.base, 1),
            "base_rss_mib": round(self.base, 1),
            "anon_rise_mib": round(self.anon_peak - self.anon_base, 1),
        }
        out.update(extra)
        return out


class Breakdown:
    """Seconds spent in each of ``BREAKDOWN``'s functions (wrapped while active)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Breakdown:
        for label, (owner, name) in BREAKDOWN.items():
            original = getattr(owner, name, None)
            if original is None:  # the engine changed: just no figure for this step
                continue
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(label, original))
        return self

    def _timed(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                self.seconds[label] = self.seconds.get(label, 0.0) + took

        return wrapper

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in self._saved:
            setattr(owner, name, original)

    def report(self, total: float) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        rest = total - sum(self.seconds.values())
        if rest >= 0:  # (summed over threads, the steps can exceed the wall time)
            out["other"] = round(rest, 3)
        return out


class CallTimes:
    """The duration of every call to some engine methods (sync or async), wrapped while
    active: ``{label: (owner, name)}``."""

    def __init__(self, methods: dict[str, tuple[Any, str]]) -> None:
        self.methods = methods
        self.seconds: dict[str, list[float]] = {label: [] for label in methods}
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> CallTimes:
        for label, (owner, name) in self.methods.items():
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(self.seconds[label], original))
        return self

    @staticmethod
    def _timed(into: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(fn):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    into.append(time.perf_counter() - start)

            return timed_async

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - start)

        return timed

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in self._saved:
            setattr(owner, name, original)

    def ms(self, label: str, *, over: float = 0.0) -> dict[str, float | None]:
        """Median and max in ms of the calls that took more than ``over`` seconds."""
        times = [t for t in self.seconds[label] if t > over]
        if not times:
            return {"median": None, "max": None}
        return {
            "median": round(statistics.median(times) * 1000, 1),
            "max": round(max(times) * 1000, 1),
        }


class SlotWaits:
    """Where a freed slot's wait goes, wrapped around the orchestrator while active: for the
    k-th submission (k >= cap), from the end of the job whose slot it takes to the poll
    that saw that end (``seen``), to the moment its create call was sent (``sent``), to
    the submit time Bedrock recorded (``created``)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}  # job name -> when a poll first returned it ended
        self.sent: dict[str, float] = {}  # job name -> when its create call was sent
        self._saved: list[tuple[str, Any]] = []

    def __enter__(self) -> SlotWaits:
        poll, submit = Orchestrator._poll, Orchestrator._submit_ready
        seen, sent = self.seen, self.sent

        async def traced_poll(orchestrator: Orchestrator) -> list[JobState]:
            changed: list[JobState] = await poll(orchestrator)
            now = time.time()
            for job in changed:
                if job.final:
                    seen.setdefault(job.name, now)
            return changed

        async def traced_submit(orchestrator: Orchestrator) -> None:
            client = orchestrator.bedrock
            create = client.create_model_invocation_job

            def timed_create(**request: Any) -> Any:  # (each create, as it is sent)
                sent.setdefault(request["jobName"], time.time())
                return create(**request)

            client.create_model_invocation_job = timed_create
            try:
                await submit(orchestrator)
            finally:
                client.create_model_invocation_job = create

        self._saved = [("_poll", poll), ("_submit_ready", submit)]
        Orchestrator._poll = traced_poll  # type: ignore[method-assign]
        Orchestrator._submit_ready = traced_submit  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._saved:
            setattr(Orchestrator, name, original)

    def report(self, jobs: list[JobState], cap: int) -> dict[str, dict[str, float]]:
        ended = sorted(jobs, key=lambda j: float(j.ended_at or 0.0))
        submitted = sorted(jobs, key=lambda j: float(j.submitted_at or 0.0))
        parts: dict[str, list[float]] = {
            "end_to_seen": [],
            "seen_to_sent": [],
            "sent_to_created": [],
        }
        for k in range(cap, len(jobs)):
            freed, taking = ended[k - cap], submitted[k]
            seen, sent = self.seen.get(freed.name), self.sent.get(taking.name)
            if seen is None or sent is None:
                continue
            parts["end_to_seen"].append(seen - float(freed.ended_at or 0.0))
            parts["seen_to_sent"].append(max(sent - seen, 0.0))
            parts["sent_to_created"].append(float(taking.submitted_at or 0.0) - sent)
        return {
            label: {
                "mean_ms": round(statistics.fmean(v) * 1000, 1),
                "max_ms": round(max(v) * 1000, 1),
            }
            for label, v in parts.items()
            if v
        }


# ---- S3 on loopback ---------------------------------------------------------------------


S3_MODES = ("mock", "server", "process")
"""Where the staged and collect cases find S3: ``mock``, moto inside this process with no
HTTP (``mock_aws``, as the reference's figures were measured); ``server``, moto's HTTP
server on a thread of this process; ``process``, moto's HTTP server in a child process
(loopback HTTP, as a real S3 endpoint is reached, without moto's work in this process)."""


S3_NOTES = {
    "mock": "moto's S3 in this process without HTTP: what it holds counts in the RSS",
    "server": "moto's S3 server on a thread of this process: its work and memory count here",
    "process": "moto's S3 server in a child process, over loopback HTTP",
}


def _aws_environment(endpoint: str | None) -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    if endpoint is None:
        os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    else:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    boto3.DEFAULT_SESSION = None


@contextlib.contextmanager
def moto_s3(mode: str = "mock") -> Iterator[Any]:
    """moto's S3 (see ``S3_MODES``), the environment pointed at it, the bucket made."""
    with contextlib.ExitStack() as stack:
        if mode == "mock":
            _aws_environment(None)
            stack.enter_context(mock_aws())
        elif mode == "server":
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # per-request lines
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            stack.callback(server.stop)
            host, port = server.get_host_and_port()
            _aws_environment(f"http://{host}:{port}")
        elif mode == "process":
            env = stack.enter_context(emulator_process())
            _aws_environment(env["AWS_ENDPOINT_URL_S3"])
        else:
            raise ValueError(f"unknown S3 mode {mode!r}: one of {', '.join(S3_MODES)}")
        s3 = Clients.create("us-east-1").s3
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def bucket_mib(s3: Any, prefix: str = "") -> tuple[int, float]:
    count, size = 0, 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            count += 1
            size += obj["Size"]
    return count, size / 2**20


# ---- cases ----------------------------------------------------------------------------------


def simplecot_path(data_dir: Path, size: int, fmt: str = "parquet") -> Path:
    path = datagen.simplecot_as(data_dir / f"simplecot-v1-{size}.parquet", fmt)
    if not path.exists():
        kind = "simplecot" if fmt == "parquet" else f"simplecot-{fmt}"
        raise SystemExit(f"{path} is missing: run `cases.py generate {kind} {size}` first")
    return path


def simplecot_rows(args: argparse.Namespace, size: int) -> Any:
    """The rows in ``--source-format``, as a user hands them to a run: a path, a DataFrame
    (``frame``, ``frame-object``, and ``frame-mixed`` with a number column ``n``), or for
    ``hf`` the dataset ``datasets.load_from_disk`` gives (memory-mapped), shuffled for
    ``hf-shuffled`` (an indices mapping over the table), and for ``hf-streamed`` the
    Parquet file through ``load_dataset(..., streaming=True)`` (as a dataset on the Hub is
    streamed; ``hf-streamed-nopre``: with pyarrow's pre-buffering off)."""
    path = simplecot_path(args.data_dir, size, args.source_format)
    if args.source_format.startswith("frame"):  # what a notebook holds (read beforehand)
        frame = pd.read_parquet(path)
        if args.source_format == "frame":
            return frame
        frame = frame.astype(object)
        if args.source_format == "frame-mixed":
            frame["n"] = range(len(frame))
        return frame
    if args.source_format.startswith("hf-streamed"):
        import datasets
        import pyarrow.dataset as pds

        options = {}
        if args.source_format.endswith("nopre"):
            options["fragment_scan_options"] = pds.ParquetFragmentScanOptions(pre_buffer=False)
        files = str(path)
        return datasets.load_dataset(
            "parquet", data_files=files, split="train", streaming=True, **options
        )
    if args.source_format.startswith("hf"):
        import datasets

        dataset = datasets.load_from_disk(str(path))
        return dataset.shuffle(seed=datagen.SEED) if "shuffled" in args.source_format else dataset
    return str(path)


def case_prepare_text_pure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    rows = simplecot_rows(args, size)
    meter = Meter()
    with Breakdown() as steps, meter.measure():
        template = (
            datagen.NUMBERED_TEMPLATE if args.source_format == "frame-mixed" else datagen.TEMPLATE
        )
        run = new_run(rows, datagen.CLAUDE_ID, template, max_records_per_job=args.records_per_job)
        prepared, request_bytes = prepare(run)
    return meter.result(
        "prepare_text_pure",
        size,
        source_format=args.source_format,
        **prepared_summary(prepared, request_bytes),
        breakdown=steps.report(meter.seconds),
    )


def case_prepare_embed_pure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    rows = simplecot_rows(args, size)
    meter = Meter()
    with Breakdown() as steps, meter.measure():
        run = new_run(
            rows,
            datagen.TITAN_ID,
            input_text_column="source",
            max_records_per_job=args.records_per_job,
        )
        prepared, request_bytes = prepare(run)
    return meter.result(
        "prepare_embed_pure",
        size,
        source_format=args.source_format,
        **prepared_summary(prepared, request_bytes),
        breakdown=steps.report(meter.seconds),
    )


def prepare_staged(stage: str, size: int, args: argparse.Namespace, **model: Any) -> dict[str, Any]:
    """Prepare and stage every job as ``start()`` does, S3 served by moto (``--s3``)."""
    path = simplecot_path(args.data_dir, size)
    with moto_s3(args.s3) as s3:
        meter = Meter()
        with Breakdown() as steps, meter.measure():
            start_at = time.perf_counter()
            run = new_run(str(path), max_records_per_job=args.records_per_job, **model)
            run.validate()
            prepared = run._prepared
            validated_at = time.perf_counter()
            stage_all(run, prepared)
            staged_at = time.perf_counter()
        files, staged = bucket_mib(s3, f"{run.layout.root_key}/input/")
        expected = len(prepared.chunks)
        if files != expected:
            raise AssertionError(f"staged {files} files, expected {expected}")
        return meter.result(
            stage,
            size,
            **prepared_summary(prepared, int(staged * 2**20)),
            validate_seconds=round(validated_at - start_at, 3),
            stage_seconds=round(staged_at - validated_at, 3),
            breakdown=steps.report(meter.seconds),
            breakdown_note="thread seconds summed over the staging threads",
            staged_mib=round(staged, 1),
            s3=args.s3,
            note=S3_NOTES[args.s3],
        )


def case_prepare_text_staged(size: int, args: argparse.Namespace) -> dict[str, Any]:
    return prepare_staged(
        "prepare_text_staged", size, args, model_id=datagen.CLAUDE_ID, prompt=datagen.TEMPLATE
    )


def case_prepare_embed_staged(size: int, args: argparse.Namespace) -> dict[str, Any]:
    return prepare_staged(
        "prepare_embed_staged", size, args, model_id=datagen.TITAN_ID, input_text_column="source"
    )


def reference_prepare(
    stage: str, size: int, args: argparse.Namespace, **model: Any
) -> dict[str, Any]:
    """The reference's preparing and staging (``reference.prepare``), S3 served by moto."""
    path = simplecot_path(args.data_dir, size)
    with moto_s3(args.s3) as s3:
        meter = Meter()
        with meter.measure():
            jobs, staged = reference.prepare(
                s3, str(path), BUCKET, "reference", records_per_job=args.records_per_job, **model
            )
        files, _ = bucket_mib(s3, "reference/inputs_json/")
        if files != jobs or jobs != math.ceil(size / args.records_per_job):
            raise AssertionError(f"staged {files} files for {jobs} jobs")
        return meter.result(
            stage,
            size,
            jobs=jobs,
            staged_mib=round(staged / 2**20, 1),
            s3=args.s3,
            note=S3_NOTES[args.s3],
        )


def case_reference_prepare_text(size: int, args: argparse.Namespace) -> dict[str, Any]:
    return reference_prepare("reference_prepare_text", size, args, template=datagen.TEMPLATE)


def case_reference_prepare_embed(size: int, args: argparse.Namespace) -> dict[str, Any]:
    return reference_prepare(
        "reference_prepare_embed", size, args, template=None, text_column="source"
    )


def case_s3_floor(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """What the staged case cannot go under: the same job files, built beforehand (not
    measured), uploaded with ``put_jsonl`` on ``STAGE_CONCURRENCY`` threads."""
    path = simplecot_path(args.data_dir, size)
    with moto_s3(args.s3) as s3:
        run = new_run(
            str(path), datagen.CLAUDE_ID, datagen.TEMPLATE, max_records_per_job=args.records_per_job
        )
        run.validate()
        prepared = run._prepared
        bodies = [run.record_body(range(c.start, c.stop)) for c in prepared.chunks]
        root = run.layout.root_key

        def put(item: tuple[int, bytes]) -> None:
            staging.put_jsonl(s3, BUCKET, f"{root}/input/part-{item[0]:05d}.jsonl", item[1])

        meter = Meter()
        with meter.measure(), ThreadPoolExecutor(run_module.STAGE_CONCURRENCY) as pool:
            list(pool.map(put, enumerate(bodies)))
        files, staged = bucket_mib(s3, f"{root}/input/")
        if files != len(bodies):
            raise AssertionError(f"uploaded {files} files, expected {len(bodies)}")
        return meter.result(
            "s3_floor",
            size,
            jobs=files,
            staged_mib=round(staged, 1),
            s3=args.s3,
            note=S3_NOTES[args.s3],
        )


def collect_fixture(
    data_dir: Path, size: int, kind: str = "collect"
) -> tuple[Path, Path, dict[str, Any]]:
    """One job's input rows, output file and meta: ``kind`` "collect" (Claude answers) or
    "embed" (Titan embeddings)."""
    rows = data_dir / f"{kind}-rows-{size}.parquet"
    out = data_dir / f"{kind}-{size}.jsonl.out"
    meta = data_dir / f"{kind}-{size}.meta.json"
    if not (rows.exists() and out.exists() and meta.exists()):
        raise SystemExit(f"{kind} fixture {size} missing: run `cases.py generate {kind} {size}`")
    return rows, out, json.loads(meta.read_text())


def check_collected(
    frame: pd.DataFrame, stats: Any, meta: dict[str, Any], column: str = "response"
) -> dict[str, Any]:
    """Every row answered (in ``column``) or with its error line's code and message: check
    and report."""
    n, errors = meta["lines"], meta["errors"]
    if (stats.successes, stats.errors, stats.malformed) != (n - errors, errors, 0):
        raise AssertionError(f"collected {stats!r}, expected {n - errors} + {errors} errors")
    if int(frame[column].notna().sum()) != n - errors:
        raise AssertionError(f"{column} missing from the frame")
    messages = frame["error"].dropna()
    kept = len(messages) == errors and bool(
        messages.str.contains("400").all() and messages.str.contains("Malformed input").all()
    )
    return {"error_rows": errors, "errors_kept": kept, "file_mib": round(meta["bytes"] / 2**20, 1)}


def collect_file(
    size: int,
    args: argparse.Namespace,
    wrap: Callable[[Any], Any] | None = None,
    *,
    kind: str = "collect",
    model_id: str = datagen.CLAUDE_ID,
) -> tuple[Meter, dict[str, Any], dict[str, Any], pd.DataFrame, Any]:
    """The measured collection of the ``kind`` fixture's output file from local disk (read
    through ``wrap`` when given): (meter, checked figures, the fixture's meta, the joined
    frame, the body read)."""
    rows_path, out_path, meta = collect_fixture(args.data_dir, size, kind)
    rows = pd.read_parquet(rows_path)  # a run holds its input rows already
    adapter = resolve_adapter(model_id)
    meter = Meter()
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as scratch:
        target = Path(scratch) / "results.parquet"
        with meter.measure():
            results = Results(len(rows), adapter)
            with open(out_path, "rb") as raw:
                body = raw if wrap is None else wrap(raw)
                stats = results.add_lines(body)
            frame = results.to_frame(rows)
            write_results(frame, target)
    column = "embedding" if adapter.kind == "embedding" else "response"
    return meter, check_collected(frame, stats, meta, column), meta, frame, body


def case_collect_pure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    meter, checked, _, _, _ = collect_file(size, args)
    return meter.result("collect_pure", size, **checked)


def case_collect_embed_pure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """``collect_pure`` for a Titan embeddings job: 1,024 numbers a line."""
    meter, checked, _, frame, _ = collect_file(size, args, kind="embed", model_id=datagen.TITAN_ID)
    if {len(v) for v in frame["embedding"].dropna()} != {datagen.EMBED_DIMENSIONS}:
        raise AssertionError("embeddings of the wrong length in the frame")
    return meter.result("collect_embed_pure", size, **checked)


def case_reference_collect(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """The reference's collecting of one job (``reference.collect``), S3 served by moto."""
    rows_path, out_path, meta = collect_fixture(args.data_dir, size)
    inputs = pd.read_parquet(rows_path)
    inputs["record_id"] = [staging.record_id(i) for i in range(len(inputs))]
    keys = ("reference/input.parquet", "reference/part-00001.jsonl.out", "reference/out.parquet")
    with moto_s3(args.s3) as s3:
        reference.put_parquet(s3, inputs, BUCKET, keys[0])
        del inputs
        with open(out_path, "rb") as body:
            s3.put_object(Bucket=BUCKET, Key=keys[1], Body=body)
        meter = Meter()
        with meter.measure():
            joined = reference.collect(s3, BUCKET, *keys)
        answered = int(joined["response"].notna().sum())
        if len(joined) != size or answered != size - meta["errors"]:
            raise AssertionError(f"joined {len(joined)} rows, {answered} answered")
        return meter.result(
            "reference_collect",
            size,
            error_rows=meta["errors"],
            errors_kept=False,  # an error line becomes a row without a response, nothing else
            file_mib=round(meta["bytes"] / 2**20, 1),
            s3=args.s3,
            note=S3_NOTES[args.s3],
        )


class NetworkBody(io.RawIOBase):
    """A file read as if it came over a network at ``rate`` bytes/s: the bytes arrive at
    that pace whether or not anyone reads (into a buffer of ``buffer`` bytes, as a socket's
    receive buffer, where they stop arriving when it is full), and a read waits, without
    the GIL as a socket read does, for bytes that have not arrived yet."""

    def __init__(self, raw: Any, rate: float, buffer: int = 8 << 20) -> None:
        self.raw, self.rate, self.buffer = raw, rate, buffer
        self.position = self.arrived = 0
        self.clock = time.perf_counter()
        self.waited = 0.0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        now = time.perf_counter()
        cap = self.position + self.buffer
        self.arrived = min(cap, self.arrived + int((now - self.clock) * self.rate))
        self.clock = now
        data: bytes = self.raw.read(size)
        short = self.position + len(data) - self.arrived
        if short > 0:
            time.sleep(short / self.rate)
            self.waited += short / self.rate
            self.arrived += short
            self.clock = time.perf_counter()
        self.position += len(data)
        return data


def case_collect_network(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """``collect_pure`` with the output file arriving at ``--net-mb-s`` (an S3 download):
    how much of the collection hides behind the transfer."""
    rate = args.net_mb_s * 1e6
    meter, checked, meta, _, body = collect_file(size, args, lambda raw: NetworkBody(raw, rate))
    return meter.result(
        "collect_network",
        size,
        **checked,
        net_mb_s=args.net_mb_s,
        transfer_s=round(meta["bytes"] / rate, 3),
        read_wait_s=round(body.waited, 3),
    )


def case_collect_s3(size: int, args: argparse.Namespace) -> dict[str, Any]:
    rows_path, out_path, meta = collect_fixture(args.data_dir, size)
    rows = pd.read_parquet(rows_path)
    adapter = resolve_adapter(datagen.CLAUDE_ID)
    prefix = "bedrock-batch/bench/output/abcdef123456/"
    with moto_s3(args.s3) as s3:
        with open(out_path, "rb") as body:
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}part-00001.jsonl.out", Body=body)
        manifest = {"totalRecordCount": size, "errorRecordCount": meta["errors"]}
        s3.put_object(
            Bucket=BUCKET, Key=f"{prefix}manifest.json.out", Body=json.dumps(manifest).encode()
        )
        meter = Meter()
        with meter.measure():
            results = Results(len(rows), adapter)
            stats = collect_job(s3, BUCKET, prefix, results)
            frame = results.to_frame(rows)
            upload_results(s3, frame, "bedrock-batch/bench/results.parquet")
        checked = check_collected(frame, stats, meta)
        return meter.result(
            "collect_s3",
            size,
            **checked,
            s3=args.s3,
            note=S3_NOTES[args.s3],
        )


def case_results_streamed(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """The last step of a run over ``max_frame_rows``: the input rows joined to their
    answers kept on disk (``SpilledValues``) and written to Parquet a batch at a time
    (``BatchRun._stream_results``).  The answers (each row's ``rationale``, about 300
    characters, ``--answer-copies`` times over; 1 % of rows failed instead) are put as
    collecting puts them, jobs of ``--records-per-job`` rows in shuffled order, before the
    measurement."""
    import numpy as np
    import pyarrow.parquet as pq

    path = simplecot_path(args.data_dir, size)
    run = new_run(str(path), datagen.CLAUDE_ID, datagen.TEMPLATE, max_frame_rows=0)
    run.validate()
    with tempfile.TemporaryDirectory(prefix="bench-results-") as scratch:
        results = Results(size, run.adapter, spill_path=f"{scratch}/answers.utf8")
        rng = np.random.default_rng(7)
        source = pq.ParquetFile(path, pre_buffer=False)  # (pre-buffered, it keeps what it read)
        answers = source.iter_batches(args.records_per_job, columns=["rationale"])
        start = 0
        for batch in answers:
            order = rng.permutation(batch.num_rows)
            failed = order[: batch.num_rows // 100]
            kept = order[batch.num_rows // 100 :]
            texts = batch.column(0)
            if args.answer_copies > 1:
                texts = pc.binary_join_element_wise(*[texts] * args.answer_copies, "")
            for block in range(0, len(kept), collecting.CONVERT_ROWS):
                rows = kept[block : block + collecting.CONVERT_ROWS]
                results.values.put_many(start + rows, texts.take(pa.array(rows)))
            results.answered[start + kept] = True
            results.input_tokens[start + kept] = 120
            results.output_tokens[start + kept] = 80
            results.errors[start + failed] = "400: Malformed input request"
            start += batch.num_rows
        target = f"{scratch}/results.parquet"
        meter = Meter()
        with meter.measure():
            run._stream_results(results, target)
        written = pq.ParquetFile(target)
        figures = meter.result(  # (before the checks below, whose reads would count)
            "results_streamed",
            size,
            answer_copies=args.answer_copies,
            file_mib=round(os.path.getsize(target) / 2**20, 1),
            row_groups=written.metadata.num_row_groups,
        )
        if written.metadata.num_rows != size:
            raise AssertionError(f"{written.metadata.num_rows} rows written, expected {size}")
        last = written.read_row_group(written.metadata.num_row_groups - 1).to_pandas()
        expected = source.read_row_group(source.num_row_groups - 1, columns=["rationale"])
        tail = [t * args.answer_copies for t in expected.column(0).to_pylist()[-len(last) :]]
        answered = last["response"].notna().to_numpy()
        if [t for t, ok in zip(tail, answered, strict=True) if ok] != list(
            last["response"][answered]
        ):
            raise AssertionError("the answers written are not the rows' own")
        return figures


def case_results_streamed_embed(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """A Titan embedding run over ``max_frame_rows`` from collecting on: each row's answer
    (``datagen.EMBED_DIMENSIONS`` numbers) put as collecting puts it, jobs of
    ``--records-per-job`` rows with their lines shuffled, 200 lines a block, 1 % of rows
    failed instead; then the rows joined to their answers and written to a local Parquet
    file (``BatchRun._stream_results``).  Measured: both steps (the random numbers are
    drawn a block at a time within them)."""
    import numpy as np
    import pyarrow.parquet as pq

    dims = datagen.EMBED_DIMENSIONS
    path = simplecot_path(args.data_dir, size)
    run = new_run(str(path), datagen.TITAN_ID, input_text_column="source", max_frame_rows=0)
    run.validate()
    vector_type = pa.list_(pa.float64())
    with tempfile.TemporaryDirectory(prefix="bench-results-") as scratch:
        meter = Meter()
        with meter.measure():
            began = time.perf_counter()
            results = Results(size, run.adapter, spill_path=f"{scratch}/answers")
            rng = np.random.default_rng(7)
            for start in range(0, size, args.records_per_job):
                rows = min(args.records_per_job, size - start)
                order = rng.permutation(rows)
                failed, kept = order[: rows // 100], order[rows // 100 :]
                for block in range(0, len(kept), 200):
                    at = start + kept[block : block + 200]
                    numbers = pa.array(rng.standard_normal(len(at) * dims))
                    offsets = pa.array(np.arange(len(at) + 1, dtype=np.int32) * dims)
                    results.values.put_many(at, pa.ListArray.from_arrays(offsets, numbers))
                    results.answered[at] = True
                    results.input_tokens[at] = 12
                results.errors[start + failed] = "400: Malformed input request"
            collected = time.perf_counter()
            target = f"{scratch}/results.parquet"
            run._stream_results(results, target)
        written = pq.ParquetFile(target)
        figures = meter.result(  # (before the checks below, whose reads would count)
            "results_streamed_embed",
            size,
            collect_s=round(collected - began, 3),
            write_s=round(meter.seconds - (collected - began), 3),
            file_mib=round(os.path.getsize(target) / 2**20, 1),
            row_groups=written.metadata.num_row_groups,
            dimensions=dims,
        )
        if written.metadata.num_rows != size:
            raise AssertionError(f"{written.metadata.num_rows} rows written, expected {size}")
        last = written.read_row_group(written.metadata.num_row_groups - 1, columns=["embedding"])
        lengths = {len(v) for v in last.column(0).to_pylist() if v is not None}
        if lengths != {dims} or written.schema_arrow.field("embedding").type != vector_type:
            raise AssertionError(f"embeddings of lengths {lengths} written, expected {dims}")
        return figures


def ideal_makespan(durations: list[float], cap: int) -> float:
    """The end of the last job if every freed slot took the next job at once."""
    slots = [0.0] * cap
    end = 0.0
    for duration in durations:
        start = heapq.heappop(slots)
        end = max(end, start + duration)
        heapq.heappush(slots, start + duration)
    return end


def case_orchestrate(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """``size`` jobs of 100 records, ``--cap`` at once, each lasting about ``--job-seconds``,
    against the emulator in another process (as a notebook reaches a remote Bedrock)."""
    per_job = 100
    fixed = 0.05
    timings = {
        "submitted": fixed,
        "validating": fixed,
        "scheduled": fixed,
        "records_per_second": per_job / args.job_seconds,
        "min_in_progress": 0.05,
    }
    nominal = 3 * fixed + max(timings["min_in_progress"], args.job_seconds)
    rows = pd.DataFrame({"topic": [f"topic number {i}" for i in range(size * per_job)]})
    with emulator_process(timings=timings, quota=max(args.cap, 20)) as env:
        os.environ.update(env)
        boto3.DEFAULT_SESSION = None
        run = new_run(
            rows,
            datagen.CLAUDE_ID,
            "Tell me a joke about {topic}.",
            bucket=env["BEDROCK_BATCH_BUCKET"],
            role_arn=env["BEDROCK_BATCH_ROLE_ARN"],
            max_records_per_job=per_job,
            max_concurrent_jobs=args.cap,
            poll_interval=args.poll_interval,
            max_record_retries=0,
        )
        run.validate()
        load_client_models()  # as %load_ext does (botocore's first clients parse its models)
        meter = Meter()
        calls = CallTimes(
            {"list": (Orchestrator, "_fetch"), "creates": (Orchestrator, "_submit_ready")}
        )
        with meter.measure(), calls, SlotWaits() as waits:
            run.start()
            frame = run.wait(timeout=600)
        stats = emulator_stats(env)
    jobs = run.status().jobs
    if len(jobs) != size or any(j.status != "Completed" for j in jobs):
        raise AssertionError(f"expected {size} Completed jobs: {[j.status for j in jobs]}")
    if int(frame["response"].notna().sum()) != len(rows):
        raise AssertionError("not every row has a response")
    # Bedrock's own clock: submitTime and endTime as the emulator recorded them.
    submitted = sorted(float(j.submitted_at or 0.0) for j in jobs)
    ended = sorted(float(j.ended_at or 0.0) for j in jobs)
    makespan = ended[-1] - submitted[0]
    by_submission = sorted(jobs, key=lambda j: float(j.submitted_at or 0.0))
    durations = [float(j.ended_at or 0.0) - float(j.submitted_at or 0.0) for j in by_submission]
    waves = math.ceil(size / args.cap)
    ideal_nominal = waves * nominal
    ideal_observed = ideal_makespan(durations, args.cap)
    # The k-th submission (k >= cap) could happen once k - cap + 1 jobs had ended.
    delays = [submitted[k] - ended[k - args.cap] for k in range(args.cap, size)]
    orchestrator = run._orchestrator
    polls = orchestrator.polls if orchestrator is not None else 0
    control = stats["list_calls"] + stats["get_calls"]
    return meter.result(
        "orchestrate",
        size * per_job,
        jobs=size,
        cap=args.cap,
        poll_interval=args.poll_interval,
        run_wall_s=round(meter.seconds, 3),
        seconds_note="seconds = first submission to last job end (makespan), emulator in "
        "another process",
        makespan_s=round(makespan, 3),
        first_wave_spread_s=round(submitted[min(args.cap, size) - 1] - submitted[0], 3),
        job_nominal_s=round(nominal, 3),
        job_observed_mean_s=round(statistics.fmean(durations), 3),
        job_observed_max_s=round(max(durations), 3),
        ideal_nominal_s=round(ideal_nominal, 3),
        ideal_observed_s=round(ideal_observed, 3),
        vs_ideal_nominal=round(makespan / ideal_nominal, 3),
        vs_ideal_observed=round(makespan / ideal_observed, 3),
        submit_delay_mean_s=round(statistics.fmean(delays), 3) if delays else None,
        submit_delay_max_s=round(max(delays), 3) if delays else None,
        polls=polls,
        list_calls=stats["list_calls"],
        get_calls=stats["get_calls"],
        create_calls=stats["create_calls"],
        control_calls_per_poll=round(control / polls, 2) if polls else None,
        max_active_jobs=stats["max_active_jobs"],
        list_call_ms=calls.ms("list"),
        create_round_ms=calls.ms("creates", over=0.001),
        slot_wait_parts=waits.report(jobs, args.cap),
    ) | {"seconds": round(makespan, 4), "rows_per_s": round(size * per_job / makespan, 1)}


def emulator_stats(env: dict[str, str]) -> dict[str, Any]:
    """The emulator's own counts (``GET /_local/stats``)."""
    url = env["AWS_ENDPOINT_URL_BEDROCK"] + "/_local/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


@contextlib.contextmanager
def emulator_process(**options: Any) -> Iterator[dict[str, str]]:
    """The emulator (Bedrock + moto S3) in a child process, as a notebook would reach it;
    ``options``: ``timings`` (a dict of :class:`JobTimings` fields) and ``quota``."""
    child = subprocess.Popen(
        [sys.executable, __file__, "_emulator", "0", json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process did not start")
        yield json.loads(line)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def serve_emulator(options: dict[str, Any]) -> None:
    timings = JobTimings(**options.get("timings", {}))
    with LocalBedrock(timings=timings, quota=options.get("quota")) as lb:
        print(json.dumps(lb.env), flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin


def case_loop_lag(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """A kernel-like process: an asyncio loop runs while a BatchRun works in the background."""
    return background_run("loop_lag", size, args)


def case_run_streamed(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """The same run with ``max_frame_rows=0``: answers kept on disk while collecting, the
    results written to Parquet a batch at a time and returned as a dataset."""
    return background_run("run_streamed", size, args, max_frame_rows=0)


def case_embed_lag(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """``loop_lag`` for a Titan embedding run (1,024 numbers a row, each output line about
    20 KB): the answers parsed, joined and written as float64 arrays, a DataFrame's worth
    up to ``max_frame_rows``' default for embeddings (131,072 rows)."""
    return background_run(
        "embed_lag",
        size,
        args,
        model_id=datagen.TITAN_ID,
        prompt=None,
        input_text_column="source",
        dimensions=datagen.EMBED_DIMENSIONS,
    )


def background_run(
    stage: str,
    size: int,
    args: argparse.Namespace,
    *,
    model_id: str = datagen.CLAUDE_ID,
    prompt: str | None = datagen.TEMPLATE,
    **options: Any,
) -> dict[str, Any]:
    path = simplecot_path(args.data_dir, size)
    tick = TICK_S
    cache = tempfile.mkdtemp(prefix="bench-cache-")  # the run's journal and local files
    os.environ["BEDROCK_BATCH_CACHE_DIR"] = cache
    with emulator_process() as env, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, cache, True)
        os.environ.update(env)
        boto3.DEFAULT_SESSION = None
        load_client_models()  # as %load_ext does (botocore's first clients parse its models)

        async def main() -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            samples: list[tuple[float, float, str]] = []
            rss_by_phase: dict[str, float] = {}  # the highest RSS seen in each phase
            current: dict[str, Any] = {"run": None}
            done = asyncio.Event()

            async def monitor() -> None:
                while not done.is_set():
                    before = loop.time()
                    running = current["run"] is not None
                    await asyncio.sleep(tick)
                    lag = loop.time() - before - tick
                    run = current["run"]
                    if run is None:
                        phase = "idle"
                    elif not running:  # this sleep spanned the synchronous start()
                        phase = "start()"
                    else:
                        phase = run.status().phase
                    samples.append((before, lag, phase))
                    rss_by_phase[phase] = max(rss_by_phase.get(phase, 0.0), rss_mib())
                    tracer.beat(lag)

            watcher = asyncio.create_task(monitor())
            await asyncio.sleep(0.2)
            begin = time.perf_counter()
            run = new_run(
                str(path),
                model_id,
                prompt,
                max_records_per_job=args.records_per_job,
                max_concurrent_jobs=20,
                poll_interval=args.poll_interval,
                max_record_retries=0,
                bucket=env["BEDROCK_BATCH_BUCKET"],
                role_arn=env["BEDROCK_BATCH_ROLE_ARN"],
                **options,
            )
            run.start()
            start_block = time.perf_counter() - begin
            current["run"] = run
            frame = await run
            total = time.perf_counter() - begin
            await asyncio.sleep(0.1)
            done.set()
            await watcher
            tracer.stop()  # the samples are over: nothing more to trace
            summary = ResultSummary.of(frame)
            if summary.rows != size or summary.failed:
                raise AssertionError("the run did not answer every row")
            lags = sorted(s[1] for s in samples)
            after = sorted(s[1] for s in samples if s[2] != "start()")
            origin = samples[0][0] if samples else 0.0
            worst = sorted(samples, key=lambda x: -x[1])[:5]
            by_phase: dict[str, float] = {}
            for _, lag, phase in samples:
                by_phase[phase] = max(by_phase.get(phase, 0.0), lag)
            return {
                "total": total,
                "start_block_ms": round(start_block * 1000, 1),
                "lag_max_ms": round(lags[-1] * 1000, 1),
                "lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 1),
                "lag_max_after_start_ms": round(after[-1] * 1000, 1) if after else None,
                "lag_p99_after_start_ms": (
                    round(after[int(0.99 * (len(after) - 1))] * 1000, 1) if after else None
                ),
                "lag_over_100ms": sum(1 for v in lags if v > 0.1),
                "lag_max_by_phase_ms": {k: round(v * 1000, 1) for k, v in by_phase.items()},
                "rss_rise_by_phase_mib": {
                    k: round(v - meter.base, 1) for k, v in rss_by_phase.items()
                },
                "lag_worst": [
                    [round(t - origin, 2), round(lag * 1000, 1), phase] for t, lag, phase in worst
                ],
                "loop_origin": origin,
                "samples": len(lags),
                "gc_pauses": [  # (start s, ms, generation, thread)
                    [round(t - origin, 2), round(took * 1000, 1), gen, name]
                    for t, took, gen, name in pauses.pauses
                ],
            }

        meter = Meter()
        threshold = threshold_s(args.trace_stalls)
        with meter.measure(), StallTracer(threshold, tick) as tracer, GcPauses() as pauses:
            figures = asyncio.run(main())
        if args.trace_stalls:
            figures["stalls"] = tracer.stalls
    meter.seconds = figures.pop("total")
    return meter.result(
        stage,
        size,
        seconds_note="seconds = start() to the awaited result, emulator in another process",
        **figures,
    )


KERNEL_SETUP = """
%load_ext bedrock_batch_nb
import asyncio, json, resource, sys, time
_bench = {"samples": [], "cells": [], "stop": False}
_bench_ns = get_ipython().user_ns
sys.path.insert(0, __BENCHMARKS__)
from stalls import TICK_S, GcPauses, StallTracer
_bench_gc = GcPauses().__enter__()  # the garbage collector's pauses: it holds the GIL throughout
_bench_tracer = StallTracer(float(__THRESHOLD__), TICK_S)  # (--trace-stalls)

def _bench_cell_start(info):
    _bench["cells"].append([time.monotonic(), None])

def _bench_cell_end(result):
    if _bench["cells"]:  # (not the set-up cell, which registers these)
        _bench["cells"][-1][1] = time.monotonic()

get_ipython().events.register("pre_run_cell", _bench_cell_start)
get_ipython().events.register("post_run_cell", _bench_cell_end)

async def _bench_monitor():
    while not _bench["stop"]:
        before = time.monotonic()
        await asyncio.sleep(TICK_S)
        run = _bench_ns.get("answers_run")
        phase = "idle" if run is None else run.status().phase
        late = time.monotonic() - before - TICK_S
        _bench["samples"].append((before, late, phase))
        _bench_tracer.beat(late)

_bench_base_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
_bench_task = asyncio.ensure_future(_bench_monitor())  # on the kernel's own event loop
"""

KERNEL_REPORT = """
_bench["stop"] = True
await _bench_task
_bench_tracer.stop()
_cell = _bench["cells"][0]  # the %%bedrock_batch cell
_lags = sorted(lag for _t, lag, _p in _bench["samples"])
_after = sorted(lag for t, lag, _p in _bench["samples"] if t >= _cell[1])
_by_phase = {}
for _t, _lag, _phase in _bench["samples"]:
    _by_phase[_phase] = max(_by_phase.get(_phase, 0.0), _lag)
print(json.dumps({
    "cell_ms": (_cell[1] - _cell[0]) * 1000,
    "lag_max_ms": _lags[-1] * 1000,
    "lag_p99_ms": _lags[int(0.99 * (len(_lags) - 1))] * 1000,
    "lag_max_after_cell_ms": _after[-1] * 1000,
    "lag_p99_after_cell_ms": _after[int(0.99 * (len(_after) - 1))] * 1000,
    "lag_over_100ms": sum(1 for v in _lags if v > 0.1),
    "lag_max_by_phase_ms": {k: round(v * 1000, 1) for k, v in _by_phase.items()},
    "samples": len(_lags),
    "lag_worst": [  # (start of the sleep after the cell's start s, lag ms, phase)
        [round(t - _cell[0], 3), round(lag * 1000, 1), p]
        for t, lag, p in sorted(_bench["samples"], key=lambda s: -s[1])[:5]
    ],
    "gc_pauses": [  # (start after the cell's start s, ms, generation, thread)
        [round(t - _cell[0], 3), round(took * 1000, 1), gen, name]
        for t, took, gen, name in _bench_gc.pauses
    ],
    "stalls": _bench_tracer.stalls,
    "rows": len(answers),
    "answered": int(answers["response"].notna().sum()),
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "base_rss_mib": _bench_base_mib,
}))
"""


def case_kernel_lag(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """The notebook as its users have it: a real IPython kernel (started by jupyter_client,
    as JupyterLab starts one) runs the ``%%bedrock_batch`` cell on the Parquet file, the
    emulator in another process.  A task on the kernel's own event loop records how late
    it wakes (as ``loop_lag``), and from outside a one-line cell is sent every 0.1 s
    (``--probe-interval``) and the time to its reply recorded: how long a user waits for
    another cell while the run works."""
    from jupyter_client.manager import start_new_kernel

    probe_s = args.probe_interval
    path = simplecot_path(args.data_dir, size)
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    with emulator_process() as env, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, cache, True)
        kernel_env = {**os.environ, **env, "BEDROCK_BATCH_CACHE_DIR": cache}
        manager, client = start_new_kernel(kernel_name="python3", env=kernel_env)
        cleanup.callback(manager.shutdown_kernel, now=True)
        cleanup.callback(client.stop_channels)

        def execute(code: str, timeout: float = 120.0) -> str:
            """Run a cell; its printed output (an error raises)."""
            printed: list[str] = []

            def hook(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream":
                    printed.append(msg["content"]["text"])

            reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
            if reply["content"]["status"] != "ok":
                raise AssertionError(f"cell failed: {reply['content']}\n{code}")
            return "".join(printed)

        threshold = threshold_s(args.trace_stalls)
        setup = KERNEL_SETUP.replace("__BENCHMARKS__", repr(str(Path(__file__).parent)))
        execute(setup.replace("__THRESHOLD__", repr(str(threshold))))
        magic = (
            f"%%bedrock_batch {path} --model {datagen.CLAUDE_ID} --out answers "
            f"--records-per-job {args.records_per_job} --concurrent-jobs 20 "
            f"--poll-interval {args.poll_interval} --bucket {env['BEDROCK_BATCH_BUCKET']} "
            f"--role {env['BEDROCK_BATCH_ROLE_ARN']} --option max_record_retries=0\n"
        )
        begin = time.perf_counter()
        execute(magic + datagen.TEMPLATE)
        probes: list[float] = []
        phase = ""
        while phase not in ("'done'", "'failed'", "'stopped'"):
            if time.perf_counter() - begin > 900:
                raise AssertionError(f"the run did not end: {phase}")
            time.sleep(probe_s)
            sent = time.perf_counter()
            msg_id = client.execute(
                "pass", silent=True, user_expressions={"phase": "answers_run.status().phase"}
            )
            while True:
                reply = client.get_shell_msg(timeout=60)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            probes.append(time.perf_counter() - sent)
            found = reply["content"]["user_expressions"]["phase"]
            phase = found.get("data", {}).get("text/plain", str(found))
            with contextlib.suppress(Exception):
                while client.get_iopub_msg(timeout=0):  # the progress widget's updates
                    pass
        total = time.perf_counter() - begin
        figures = json.loads(execute(KERNEL_REPORT).strip().splitlines()[-1])
    if phase != "'done'" or figures["answered"] != size or figures["rows"] != size:
        raise AssertionError(f"the run ended {phase}: {figures['answered']} of {size} answered")
    ordered = sorted(probes)
    peak, base = figures.pop("peak_rss_mib"), figures.pop("base_rss_mib")
    return {
        "stage": "kernel_lag",
        "rows": size,
        "seconds": round(total, 3),
        "rows_per_s": round(size / total, 1),
        "peak_rss_mib": round(peak, 1),
        "rss_rise_mib": round(peak - base, 1),
        "seconds_note": "seconds = the %%bedrock_batch cell sent to the run's end (seen by a "
        f"probe every {probe_s} s); the kernel's figures",
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()},
        "probe_max_ms": round(ordered[-1] * 1000, 1),
        "probe_p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1),
        "probes": len(ordered),
    }


CASES: dict[str, Callable[[int, argparse.Namespace], dict[str, Any]]] = {
    "prepare_text_pure": case_prepare_text_pure,
    "prepare_embed_pure": case_prepare_embed_pure,
    "prepare_text_staged": case_prepare_text_staged,
    "prepare_embed_staged": case_prepare_embed_staged,
    "reference_prepare_text": case_reference_prepare_text,
    "reference_prepare_embed": case_reference_prepare_embed,
    "reference_collect": case_reference_collect,
    "s3_floor": case_s3_floor,
    "collect_pure": case_collect_pure,
    "collect_embed_pure": case_collect_embed_pure,
    "collect_s3": case_collect_s3,
    "collect_network": case_collect_network,
    "run_streamed": case_run_streamed,
    "results_streamed": case_results_streamed,
    "results_streamed_embed": case_results_streamed_embed,
    "orchestrate": case_orchestrate,
    "loop_lag": case_loop_lag,
    "embed_lag": case_embed_lag,
    "kernel_lag": case_kernel_lag,
}


def generate(kind: str, size: int, data_dir: Path) -> None:
    if kind.startswith("simplecot"):
        path = data_dir / f"simplecot-v1-{size}.parquet"
        if not path.exists():
            datagen.write_simplecot(path, size)
        fmt = kind.removeprefix("simplecot").removeprefix("-") or "parquet"
        if not datagen.simplecot_as(path, fmt).exists():
            datagen.write_simplecot_as(path, fmt)
        print(json.dumps({"generated": str(datagen.simplecot_as(path, fmt)), "rows": size}))
    elif kind == "collect":
        if not (data_dir / f"collect-{size}.meta.json").exists():
            datagen.write_collect_fixture(data_dir, size)
        print((data_dir / f"collect-{size}.meta.json").read_text())
    elif kind == "embed":
        if not (data_dir / f"embed-{size}.meta.json").exists():
            datagen.write_embed_fixture(data_dir, size)
        print((data_dir / f"embed-{size}.meta.json").read_text())
    else:
        raise SystemExit(f"unknown data kind {kind!r}: simplecot[-csv|-jsonl|-hf], collect, embed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=[*CASES, "generate", "_emulator"])
    parser.add_argument("size", help="rows (prepare, s3_floor, loop_lag), lines (collect), jobs")
    parser.add_argument(
        "extra", nargs="?", help="generate: the size; _emulator: its options (JSON)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--cap", type=int, default=20, help="orchestrate: concurrent jobs")
    parser.add_argument("--job-seconds", type=float, default=1.0, help="orchestrate: job length")
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=0.1,
        help="kernel_lag: seconds between the one-line cells sent to the kernel",
    )
    parser.add_argument(
        "--net-mb-s", type=float, default=100.0, help="collect_network: MB/s the output arrives at"
    )
    parser.add_argument(
        "--records-per-job", type=int, default=RECORDS_PER_JOB, help="prepare and run cases"
    )
    parser.add_argument(
        "--source-format",
        choices=datagen.SOURCE_FORMATS,
        default="parquet",
        help="prepare_*_pure: the form the rows are read from",
    )
    parser.add_argument(
        "--s3", choices=S3_MODES, default="mock", help="staged and collect_s3: see S3_MODES"
    )
    parser.add_argument(
        "--answer-copies",
        type=int,
        default=1,
        help="results_streamed: each answer is its row's rationale this many times over",
    )
    parser.add_argument(
        "--trace-stalls",
        type=float,
        metavar="MS",
        help="loop_lag and run_streamed: record every thread's frames when the loop stalls MS",
    )
    args = parser.parse_args(argv)
    if args.case == "_emulator":
        serve_emulator(json.loads(args.extra or "{}"))
        return 0
    if args.case == "generate":
        generate(args.size, int(args.extra), args.data_dir)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as journals:
        os.environ.setdefault("BEDROCK_BATCH_CACHE_DIR", journals)
        result = CASES[args.case](int(args.size), args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # threads the engine, moto or boto3 leave behind must not hold the exit
