"""The run's journal: its state on S3, so that any kernel or machine can re-attach.

``s3://<bucket>/<prefix>/<run_id>/run.json`` holds the configuration, the input rows'
location (``input/rows.parquet``, written before anything is submitted), every job
(its records, name, ARN once created, last status) and the phase.  It is rewritten after
staging, after every submission, whenever a job ends and when the run ends, and a copy is
kept in the local cache directory.  :meth:`BatchRun.resume` reads it back.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow import ArrowException

from .aws import PARQUET_CONTENT_TYPE, error_code, upload
from .chunking import Chunk
from .config import RunConfig
from .errors import BatchInputError
from .orchestrator import JobState, timestamp
from .sources import RowSource
from .staging import RunLayout

VERSION = 1
CACHE_ENV = "BEDROCK_BATCH_CACHE_DIR"


def cache_dir() -> Path:
    """Where local copies of journals go (``$BEDROCK_BATCH_CACHE_DIR`` or the user cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bedrock-batch-nb" / "runs"


def journal_key(layout: RunLayout) -> str:
    return f"{layout.root_key}/run.json"


def rows_key(layout: RunLayout) -> str:
    return f"{layout.root_key}/input/rows.parquet"


def job_to_dict(job: JobState) -> dict[str, Any]:
    return {
        "index": job.chunk.index,
        "start": job.chunk.start,
        "stop": job.chunk.stop,
        "positions": job.positions,
        "attempt": job.attempt,
        "name": job.name,
        "input_uri": job.input_uri,
        "arn": job.arn,
        "status": job.status,
        "message": job.message,
        "submitted_at": job.submitted_at,
        "ended_at": job.ended_at,
        "total": job.total,
        "processed": job.processed,
        "success": job.success,
        "errors": job.errors,
    }


def job_from_dict(d: dict[str, Any]) -> JobState:
    return JobState(
        chunk=Chunk(d["index"], d["start"], d["stop"]),
        name=d["name"],
        input_uri=d["input_uri"],
        positions=d.get("positions"),
        attempt=d.get("attempt", 0),
        arn=d.get("arn"),
        status=d["status"],
        message=d.get("message"),
        submitted_at=d.get("submitted_at"),
        ended_at=d.get("ended_at"),
        total=d.get("total", 0),
        processed=d.get("processed", 0),
        success=d.get("success", 0),
        errors=d.get("errors", 0),
    )


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return asdict(config)


def config_from_dict(d: dict[str, Any]) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    values = {k: v for k, v in d.items() if k in known}
    if values.get("stop_sequences") is not None:
        values["stop_sequences"] = tuple(values["stop_sequences"])
    return RunConfig(**values)


def write(s3: Any, layout: RunLayout, state: dict[str, Any], **put: Any) -> None:
    """Write the journal to S3 and to the local cache (``put``: extra put_object args)."""
    state = {"version": VERSION, "updated_at": time.time(), **state}
    body = json.dumps(state, indent=1, default=str).encode()
    s3.put_object(
        Bucket=layout.bucket,
        Key=journal_key(layout),
        Body=body,
        ContentType="application/json",
        **put,
    )
    try:
        path = cache_dir() / f"{layout.run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    except OSError:  # the cache is a convenience; S3 is the record
        pass


def read(s3: Any, layout: RunLayout) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=layout.bucket, Key=journal_key(layout))["Body"].read()
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404", "NoSuchBucket"):
            raise BatchInputError(
                f"No run {layout.run_id!r} under {layout.root_uri} (no run.json there). "
                "list_runs(bucket=...) shows the runs that exist."
            ) from None
        raise
    state: dict[str, Any] = json.loads(body)
    return state


def write_rows(s3: Any, layout: RunLayout, rows: RowSource, **put: Any) -> str | None:
    """Keep the input rows beside the jobs so that a resumed run can join results back
    (a Parquet source is uploaded as it is; others are written a batch at a time).
    Returns a note when the rows cannot be stored as Parquet (resume then needs ``data=``)."""
    try:
        with rows.parquet_file() as path:
            upload(
                s3, path, layout.bucket, rows_key(layout), ContentType=PARQUET_CONTENT_TYPE, **put
            )
    except (TypeError, ValueError, ArrowException) as exc:
        return f"Input rows not saved for resume ({type(exc).__name__}: {exc})."
    return None


def saved_rows(s3: Any, layout: RunLayout) -> str:
    """The ``s3://`` URI of the rows :func:`write_rows` saved, once a HEAD request has
    found them there (the run downloads them when it reads them)."""
    try:
        s3.head_object(Bucket=layout.bucket, Key=rows_key(layout))
    except Exception as exc:
        raise BatchInputError(
            f"Run {layout.run_id!r} has no saved input rows at "
            f"s3://{layout.bucket}/{rows_key(layout)} ({error_code(exc) or exc}): pass the "
            "same rows as data= to resume it."
        ) from None
    return f"s3://{layout.bucket}/{rows_key(layout)}"


def list_runs(s3: Any, bucket: str, s3_prefix: str) -> pd.DataFrame:
    """One row per run journal under ``s3://bucket/s3_prefix/``, newest first."""
    prefix = f"{s3_prefix.strip('/')}/" if s3_prefix else ""
    rows = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            run_id = common["Prefix"][len(prefix) :].strip("/")
            layout = RunLayout(bucket, s3_prefix, run_id)
            try:
                state = read(s3, layout)
            except BatchInputError:
                continue
            jobs = state.get("jobs", [])
            rows.append(
                {
                    "run_id": run_id,
                    "model_id": state.get("config", {}).get("model_id"),
                    "phase": state.get("phase"),
                    "records": state.get("records"),
                    "jobs": len(jobs),
                    "jobs_done": sum(
                        j["status"]
                        in ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
                        for j in jobs
                    ),
                    "created_at": timestamp(state.get("created_at")),
                    "updated_at": timestamp(state.get("updated_at")),
                }
            )
    frame = pd.DataFrame(
        rows,
        columns=[
            "run_id",
            "model_id",
            "phase",
            "records",
            "jobs",
            "jobs_done",
            "created_at",
            "updated_at",
        ],
    )
    ordered: pd.DataFrame = frame.sort_values("created_at", ascending=False, ignore_index=True)
    return ordered
