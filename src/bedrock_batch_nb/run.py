"""The Python API: :class:`BatchRun` and :func:`run_batch`.

A run goes: open the rows (:mod:`.sources`, read a record batch at a time) → validate and
plan chunks (one pass over the batches) → render and build each job's records and stage
them on S3 (a second pass, in order) → submit and poll → collect → one DataFrame (all in a
background thread with its own asyncio loop, so ``start()`` returns at once in a notebook,
a script or a test alike; ``validate()`` runs the first pass in the caller's thread).
``wait()`` blocks, ``await run`` awaits, ``status()`` reports, ``stop()`` stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from pyarrow import ArrowException as ArrowError

from . import journal
from .aws import (
    PARQUET_CONTENT_TYPE,
    Clients,
    describe_error,
    drained,
    gather_pieces,
    upload,
)
from .chunking import Chunk, ChunkPlanner, plan_chunks
from .collecting import (
    PARQUET_BATCH_ROWS,
    Results,
    collect_job,
    dictionary_columns,
    frame_to_arrow,
    parquet_schema,
    results_writer,
    upload_parquet,
    write_parquet,
)
from .config import RunConfig, check_option_names
from .errors import BatchInputError, BatchRunError
from .models import InferenceParams, ModelAdapter, ModelOutput, resolve_adapter
from .orchestrator import PENDING, JobState, Orchestrator, RunStatus, SubmitSpec, crash_point
from .prompts import PromptTemplate, Rows, column_of, get_prompt, text_array, text_lengths
from .sources import RowSource, describe_source, open_source, parse_s3_uri
from .staging import RecordBuilder, RunLayout, TextParts, put_jsonl, put_options
from .validation import (
    LengthChecks,
    ValueChecks,
    check_columns,
    check_index,
    check_rows,
    model_problem,
)

Listener = Callable[[RunStatus], None]
Result: TypeAlias = pd.DataFrame | pa_dataset.Dataset
"""What a finished run returns: one DataFrame, or for a large run a dataset over its file."""
COLLECT_CONCURRENCY = 2
"""Jobs' outputs read at once.  Jobs often end together (a wave of 20 at the end of a run);
reading them two at a time keeps both cores busy (one parses while the other downloads)
and holds two jobs' blocks rather than one per thread of the pool."""

STAGE_CONCURRENCY = 8
"""Jobs whose input files are held at once: one being built (in input order, one at a time:
it is CPU work, and the rows are read in order), the others uploading."""

STAGE_BYTES = 96 << 20
"""Bytes of built input files held while they upload: the next file is built only below
this (or when none is held), so that 50,000-record jobs (about 50 MiB each) do not hold
``STAGE_CONCURRENCY`` files at once."""


def failure_hint(message: str | None) -> str:
    """What to check for a job that Failed, from its message."""
    text = (message or "").lower()
    if "role" in text or "assume" in text or "access" in text or "denied" in text:
        return (
            "Check the service role: it must trust bedrock.amazonaws.com and may read the "
            "input and write the output prefix (and use the KMS key, if any)."
        )
    if "record" in text or "jsonl" in text or "format" in text:
        return "Check the input records: count within the job limits, one JSON object per line."
    if "s3" in text or "bucket" in text or "key" in text:
        return "Check that the bucket exists in the job's Region and the role can reach it."
    return "See the job's message in run.status().jobs_frame()."


def _every_nth(rows: Rows, step: int) -> Rows:
    """A sample of rows, in the form they came in."""
    step = max(1, step)
    if isinstance(rows, pa.Table):
        return rows.take(np.arange(0, rows.num_rows, step))
    picked: pd.DataFrame = rows.iloc[::step]
    return picked


def give_back_memory() -> None:
    """Return memory that a phase of a run freed to the system: Arrow's pool
    (``release_unused``) and, where the C library is glibc, ``malloc_trim(0)``, which
    hands back the free pages of every thread's heap (glibc otherwise keeps them for reuse,
    and a kernel would hold them for the rest of its life).  Nothing in use is touched.
    Called between a run's phases, on a worker thread (the trim takes the heaps' locks)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # (glibc; not musl)
    except (OSError, AttributeError):
        return None
    return trim


def new_run_id(prefix: str) -> str:
    """``<prefix>-YYYYmmdd-HHMMSS-xxxx``: unique, sortable, and a valid job name stem."""
    return f"{prefix}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


_MAX_RECORD = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Prepared:
    """What validation computes: how the records are cut into jobs.

    The request lines themselves are built per job while it is staged, so a run never holds
    the whole rendered dataset.  Jobs are planned within the file-size limit by each
    record line's estimated bytes (staging checks the real size), given as a fixed part and
    bytes per character (:meth:`BatchRun._bytes_per_char`), and kept only as each job's
    total, ``job_bytes``; ``chars`` are the characters of every text sent (for the cost
    estimate)."""

    chunks: list[Chunk]
    job_bytes: list[int]
    records: int
    chars: int
    fixed: int
    per_char: float

    def estimate(self, lengths: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
        """The estimated bytes of the record lines of texts of ``lengths`` characters."""
        return _estimated_bytes(lengths, self.fixed, self.per_char)


def _estimated_bytes(
    lengths: npt.NDArray[Any], fixed: int, per_char: float
) -> npt.NDArray[np.int32]:
    """Record lines' estimated bytes (int32: no record comes near 2 GiB; bigger ones are
    capped at ``_MAX_RECORD``, which is over every file limit)."""
    sizes: npt.NDArray[np.int32] = np.minimum(
        fixed + np.ceil(lengths * per_char), _MAX_RECORD
    ).astype(np.int32)
    return sizes


class BatchRun:
    """One batch inference run over a dataset.

    ``data`` is a DataFrame, a CSV/Parquet/JSONL path or ``s3://`` URI, an
    ``hf://<dataset>[:<split>]`` id, a ``datasets.Dataset`` or ``IterableDataset``; every
    other option is a :class:`~bedrock_batch_nb.config.RunConfig` field (see the README's
    table).
    """

    def __init__(
        self,
        data: Any,
        model_id: str,
        prompt: str | None = None,
        *,
        hf_split: str | None = None,
        **options: Any,
    ) -> None:
        check_option_names(options)
        if "stop_sequences" in options and options["stop_sequences"] is not None:
            options["stop_sequences"] = tuple(options["stop_sequences"])
        config = RunConfig(model_id=model_id, prompt=prompt, **options)
        self._setup(data, config, new_run_id(config.job_name_prefix), hf_split)

    def _setup(self, data: Any, config: RunConfig, run_id: str, hf_split: str | None) -> None:
        self.config = config
        self.data = data
        self.hf_split = hf_split
        self.run_id = run_id
        self._clients: Clients | None = None
        self._source: RowSource | None = None
        self._num_rows: int | None = None
        self._prepared: Prepared | None = None
        self._layout: RunLayout | None = None
        self._listeners: list[Listener] = []
        self._status = RunStatus(self.run_id, "created", 0)
        self._future: concurrent.futures.Future[Result] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._orchestrator: Orchestrator | None = None
        self._stop = threading.Event()
        self._jobs: list[JobState] = []
        self._resumed = False
        self._created_at = time.time()
        self.result: Result | None = None
        """The joined DataFrame, once the run has finished (or what finished, if it failed)."""
        self.error: BaseException | None = None
        """Why the run failed, once it has."""
        self._done_callbacks: list[Callable[[BatchRun], None]] = []
        self._done_lock = threading.Lock()
        self._ended = False
        self._journal_task: asyncio.Future[None] | None = None
        self._journal_dirty = False
        self._journal_phase = "staging"
        self._journal_saved = False

    @classmethod
    def resume(
        cls,
        run_id: str,
        *,
        bucket: str | None = None,
        s3_prefix: str = "bedrock-batch",
        region: str | None = None,
        data: Any = None,
        **options: Any,
    ) -> BatchRun:
        """Re-attach to a run from its journal on S3 (from any kernel or machine).

        Jobs already submitted are found, not submitted again; ``start()`` / ``wait()``
        then keep waiting, submit what was never submitted, and collect.  ``options``
        may change how it is watched (``poll_interval``, ``max_concurrent_jobs``, ...).
        """
        probe = RunConfig(model_id="-", bucket=bucket, s3_prefix=s3_prefix, region=region)
        clients = Clients.create(region)
        layout = RunLayout(probe.resolved_bucket(), s3_prefix, run_id)
        state = journal.read(clients.s3, layout)
        config = journal.config_from_dict(state["config"])
        check_option_names(options)
        config = config.with_options(**options)
        rows = data if data is not None else journal.saved_rows(clients.s3, layout)
        run = cls.__new__(cls)
        run._setup(rows, config, run_id, None)
        run._clients = clients
        run._jobs = [journal.job_from_dict(d) for d in state["jobs"]]
        run._resumed = True
        run._journal_saved = True  # (it was just read)
        run._created_at = state.get("created_at", run._created_at)
        run._status = RunStatus(run_id, "created", int(state.get("records", 0)))
        return run

    # ---- what the run is made of ---------------------------------------------------------

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            self._clients = Clients.create(self.config.region)
        return self._clients

    @property
    def adapter(self) -> ModelAdapter:
        return resolve_adapter(self.config.model_id, self.config.invocation_type)

    @property
    def template(self) -> PromptTemplate | None:
        if self.config.prompt_id is not None:
            return get_prompt(self.config.prompt_id).template
        if self.config.prompt is not None and self.config.prompt.strip():
            return PromptTemplate(self.config.prompt)
        return None

    @property
    def system_prompt(self) -> str | None:
        if self.config.system_prompt is not None:
            return self.config.system_prompt
        if self.config.prompt_id is not None:
            return get_prompt(self.config.prompt_id).system_prompt
        return None

    @property
    def params(self) -> InferenceParams:
        c = self.config
        return InferenceParams(
            max_tokens=c.max_tokens,
            temperature=c.temperature,
            top_p=c.top_p,
            top_k=c.top_k,
            stop_sequences=c.stop_sequences,
            dimensions=c.dimensions,
            normalize=c.normalize,
        )

    @property
    def source(self) -> RowSource:
        """The input rows, read a record batch at a time (opened on first use, capped by
        ``max_records_total``)."""
        if self._source is None:
            s3 = self.clients.s3 if isinstance(self.data, str) and "s3://" in self.data else None
            self._source = open_source(
                self.data,
                max_records_total=self.config.max_records_total,
                hf_split=self.hf_split,
                s3_client=s3,
                on_rows_read=_Progress(
                    self, "Read {:,} rows of the streamed dataset so far.".format
                ),
                on_bytes_read=_Progress(self, _bytes_note),
            )
        return self._source

    @property
    def num_rows(self) -> int:
        """How many input rows the run has (``max_records_total`` applied)."""
        counted = self._counted_rows()
        return self.source.num_rows if counted is None else counted

    def _counted_rows(self) -> int | None:
        """The rows' count when known without reading them (None: a big file that only a
        preview has read, not to be opened whole for a status on the caller's thread),
        kept when the run lets go of its rows."""
        return self._num_rows if self._source is None else self._source.counted_rows

    def _let_go_of_rows(self) -> None:
        """Close the source and drop it, once the run has ended: its temporary copies of
        the rows (an S3 download, a CSV or JSONL file's Parquet, a dataset's selection)
        are deleted now, not when the run object is (a notebook keeps its runs).  A later
        read opens the data again."""
        source, self._source = self._source, None
        if source is not None:
            self._num_rows = source.counted_rows
            source.close()

    @property
    def rows(self) -> pd.DataFrame:
        """Every input row as one DataFrame (read whole: for small data and the final join)."""
        return self.source.frame()

    @property
    def text_columns(self) -> list[str]:
        """The columns records are made of: the template's, or the embedded column."""
        template = self.template
        wanted = template.fields if template is not None else (self.config.input_text_column,)
        return [c for c in wanted if c in self.source.columns]

    @property
    def layout(self) -> RunLayout:
        if self._layout is None:
            self._layout = RunLayout(
                self.config.resolved_bucket(), self.config.s3_prefix, self.run_id
            )
        return self._layout

    def texts(self, rows: pd.DataFrame) -> pd.Series:
        """The text sent for each row: the rendered template, or the embedding column."""
        template = self.template
        if template is not None:
            return template.render_frame(rows)
        return rows[self.config.input_text_column].astype(str)

    # ---- before anything is paid for -----------------------------------------------------

    def validate(self) -> RunPlan:
        """Check options, model, template and rows; raise :class:`BatchInputError` listing
        every problem, or return the plan of jobs."""
        if self._prepared is None:
            self._prepared = self._prepare()
        return RunPlan(self)

    def check_setup(self) -> None:
        """Check what :meth:`validate` checks short of reading the rows: options, model,
        parameters, template, and the columns when the data's schema is known without
        reading it whole (a Parquet file's, a DataFrame's, a streamed dataset's declared
        features; not yet a big CSV's).  Raises
        :class:`BatchInputError` listing every problem.  Quick whatever the data's size:
        what a notebook checks before it starts a large run, whose rows are then checked
        in the background before anything is submitted."""
        problems, _ = self._setup_problems(known_columns_only=True)
        if problems:
            raise BatchInputError(problems)

    def _setup_problems(self, *, known_columns_only: bool = False) -> tuple[list[str], list[str]]:
        """Problems with the options (raised at once), model, parameters, template and the
        data's columns; and the columns the records are made of."""
        problems = self.config.option_problems()
        if problems:
            raise BatchInputError(problems)
        adapter = self.adapter  # raises UnknownModelError
        template = self.template  # raises on a bad template
        problems = list(adapter.validate_params(self.params, system=self.system_prompt))
        source = self.source
        columns = source.known_columns if known_columns_only else source.columns
        if columns is None:  # (checked with the rows): only what does not depend on them
            columns = (
                [*template.fields] if template is not None else [self.config.input_text_column]
            )
        column_problems, used = check_columns(columns, self.config, adapter, template)
        return problems + column_problems, used

    def _prepare(self) -> Prepared:
        if self._status.phase == "preparing" and self.source.counted_rows is None:
            # (a streamed dataset, a big CSV, JSONL or S3 file: read whole before its rows
            # are counted, which can take minutes)
            self._publish(None, note=f"Reading the rows of {describe_source(self.data)}.")
        problems, used = self._setup_problems()
        source, template = self.source, self.template
        checked = _Progress(self, f"Checked {{:,}} of {source.num_rows:,} rows.".format)
        values = ValueChecks(used, templated=template is not None)
        too_long = LengthChecks(self.adapter)
        chars = 0
        fixed, per_char = 0, 1.0
        complete = len(used) == len(template.fields) if template is not None else bool(used)
        c = self.config
        # the jobs, planned as the rows come by each record line's estimated bytes
        planner = ChunkPlanner(
            max_records_per_job=c.max_records_per_job,
            min_records_per_job=c.min_records_per_job,
            max_num_jobs=c.max_num_jobs,
            max_file_bytes=c.max_input_file_bytes,
        )
        if used or complete:  # (a template without placeholders still counts its rows)
            for start, batch in source.raw_batches(used or source.columns[:1]):
                size = batch.num_rows if isinstance(batch, pa.Table) else len(batch)
                labels = source.index[start : start + size]
                values.add(batch, labels)
                if complete:
                    lengths = self.text_lengths(batch)
                    too_long.add(lengths, labels)
                    if not planner.records:
                        fixed, per_char = self._bytes_per_char(_every_nth(batch, size // 500))
                    planner.add(_estimated_bytes(lengths, fixed, per_char))
                    chars += int(lengths.sum())
                checked(start + size)
        problems += values.problems() + check_index(source.index, self.config)
        problems += too_long.problems()
        if problems:
            raise BatchInputError(problems)
        chunks = planner.finish()
        return Prepared(chunks, planner.job_bytes, planner.records, chars, fixed, per_char)

    def text_lengths(self, rows: Rows) -> npt.NDArray[Any]:
        """Characters of the text sent for each row, without rendering it."""
        template = self.template
        if template is not None:
            return template.arrow_lengths(rows)
        return text_lengths(column_of(rows, self.config.input_text_column))

    def text_array(self, rows: Rows) -> pa.Array:
        """The text sent for each row as an Arrow string array (what staging builds from)."""
        template = self.template
        if template is not None:
            return template.render_arrow(rows)
        return text_array(column_of(rows, self.config.input_text_column))

    def _bytes_per_char(self, sample: Rows) -> tuple[int, float]:
        """How record lines' bytes follow from their texts' characters: a fixed part, and
        the bytes per character (escapes, UTF-8) measured on a sample of rows with 10% to
        spare, so that staging's real sizes stay under the plan's."""
        builder = self._builder()
        fixed = len(builder.body([""], [0]))
        texts = self.text_array(sample)  # (what staging builds the records from)
        chars = int(self.text_lengths(sample).sum())
        sample_bytes = len(builder.body(texts, range(len(texts))))
        ratio = (sample_bytes - fixed * len(texts)) / chars if chars else 1.0
        return fixed, ratio * 1.1

    def _builder(self) -> RecordBuilder:
        return RecordBuilder(self.adapter, system=self.system_prompt, params=self.params)

    def record_body(self, positions: range | list[int]) -> bytes:
        """The JSONL input file of the rows at ``positions`` (what a job is staged with)."""
        return b"".join(self.record_pieces(positions))

    def record_pieces(self, positions: range | list[int]) -> Iterator[bytes | bytearray]:
        """:meth:`record_body` in consecutive pieces, built ``source.batch_rows`` rows at a
        time as they are taken: a job's file is built holding one batch's rows and prompts,
        not all of its rows and prompts at once."""
        builder = self._builder()
        step = self.source.batch_rows
        for i in range(0, len(positions), step):
            part = positions[i : i + step]
            yield from builder.body_parts(self._texts_at(part), part)

    def _texts_at(self, positions: range | list[int]) -> pa.Array | TextParts:
        """The texts of the rows at ``positions`` as staging builds records from them: a
        template's pieces, which it joins itself, or the embedded column's texts."""
        rows: Rows
        if isinstance(positions, range):
            rows = self.source.read_raw(positions.start, positions.stop, self.text_columns)
        else:
            rows = self.source.take(positions, self.text_columns)
        template = self.template
        if template is not None and template.fields:
            return TextParts(tuple(template.arrow_parts(rows)))
        return self.text_array(rows)

    def plan(self) -> pd.DataFrame:
        """The jobs this run would submit: records, first and last row, and input bytes
        (estimated from the texts' lengths; staging checks the real size)."""
        return self.validate().frame()

    def preview(self, n: int = 3, *, invoke: bool = False) -> pd.DataFrame:
        """The first ``n`` rows rendered as they would be sent; with ``invoke=True`` also the
        model's on-demand answers (``bedrock-runtime``, same body, same parser)."""
        if n < 0:
            raise BatchInputError(f"preview(n={n}): n is how many rows to show, 0 or more.")
        adapter = self.adapter
        template = self.template
        sample = self.source.head(n)
        problems = [
            p
            for p in check_rows(sample, self.config, adapter, template)
            if "a Bedrock batch job needs" not in p
        ]
        if problems:
            raise BatchInputError(problems)
        texts = self.texts(sample)
        builder = RecordBuilder(adapter, system=self.system_prompt, params=self.params)
        out: pd.DataFrame = pd.DataFrame(
            {"prompt" if adapter.kind == "text" else "input_text": texts}, index=sample.index
        )
        out["model_input"] = [json.dumps(builder.model_input(t), ensure_ascii=False) for t in texts]
        if invoke:
            answers = [self._invoke(builder, t) for t in texts]
            value = "embedding" if adapter.kind == "embedding" else "response"
            out[value] = [a[0] for a in answers]
            out["error"] = [a[1] for a in answers]
            out["input_tokens"] = pd.array([a[2] for a in answers], dtype="Int64")
            out["output_tokens"] = pd.array([a[3] for a in answers], dtype="Int64")
        return out

    def _invoke(self, builder: RecordBuilder, text: str) -> tuple[Any, str | None, Any, Any]:
        parsed = self._invoke_raw(builder, text)
        if isinstance(parsed, str):
            return None, parsed, None, None
        value = parsed.embedding if builder.adapter.kind == "embedding" else parsed.response
        return value, None, parsed.input_tokens, parsed.output_tokens

    def _invoke_raw(self, builder: RecordBuilder, text: str) -> ModelOutput | str:
        """One on-demand call with the body a batch record would carry; an error as text."""
        try:
            response = self.clients.runtime.invoke_model(
                modelId=self.config.model_id,
                body=json.dumps(builder.model_input(text)).encode(),
                contentType="application/json",
                accept="application/json",
            )
            return builder.adapter.parse_response(json.loads(response["body"].read()))
        except Exception as exc:  # shown per row, like a batch error line
            return describe_error(exc)

    # ---- running ---------------------------------------------------------------------------

    def start(self) -> BatchRun:
        """Start the run in the background and return at once.

        Options, model, template, bucket and role are checked here; the rows are checked
        (and the jobs planned) in the background, so that a large dataset never holds up
        the caller's event loop: a problem with them surfaces from ``wait()``.  Call
        :meth:`validate` first to see every problem before starting.
        """
        if self._future is not None:
            raise BatchRunError(f"Run {self.run_id} has already been started.")
        problems = self.config.option_problems()
        if problems:
            raise BatchInputError(problems)
        _ = self.adapter, self.template  # unknown model, bad template
        role = self.config.resolved_role_arn()
        layout = self.layout
        # The journal keeps where the run lives, so that resume works from anywhere.
        self.config = self.config.with_options(bucket=layout.bucket, role_arn=role)
        spec = SubmitSpec(
            run_id=self.run_id,
            model_id=self.config.model_id,
            role_arn=role,
            output_uri=layout.output_uri,
            invocation_type=self.config.invocation_type,
            timeout_hours=self.config.timeout_hours,
            kms_key_id=self.config.kms_key_id,
            bucket_owner=self.config.s3_bucket_owner,
            tags=self.config.tags,
        )
        self._future = concurrent.futures.Future()
        self._publish("preparing", started=True)
        thread = threading.Thread(
            target=self._thread_main,
            args=(spec,),
            name=f"bedrock-batch-{self.run_id}",
            daemon=True,
        )
        thread.start()
        return self

    def _thread_main(self, spec: SubmitSpec) -> None:
        assert self._future is not None
        try:
            self._run_to_the_end(spec)
        finally:
            if self._orchestrator is not None:
                self._orchestrator.close()

    def _run_to_the_end(self, spec: SubmitSpec) -> None:
        assert self._future is not None
        try:
            clients = self.clients  # creating boto3 clients takes a while: not in start()
            if not self._jobs:  # (a resumed run's model created its jobs already)
                problem = model_problem(clients.bedrock, self.config.model_id)
                if problem is not None:  # a misspelt id: said before the rows are read
                    raise BatchInputError(problem)
            prepared = self.validate()._prepared
            assert prepared is not None
            if not self._jobs:  # a new run; a resumed one has its jobs from the journal
                self._jobs = [
                    JobState(
                        chunk, f"{self.run_id}-{chunk.index:04d}", self.layout.input_uri(chunk)
                    )
                    for chunk in prepared.chunks
                ]
            with self._step(None):
                frame = asyncio.run(self._main(clients, spec, prepared))
        except BaseException as exc:
            self._let_go_of_rows()
            self.error = exc
            self._publish("failed", note=str(exc), finished=True)
            self._call_done_callbacks()
            self._future.set_exception(exc)
        else:
            self._let_go_of_rows()
            self.result = frame
            self._call_done_callbacks()
            self._future.set_result(frame)

    @contextlib.contextmanager
    def _step(self, step: str | None) -> Iterator[None]:
        """Turn an error that AWS (past botocore's retries) or the local disk raises in
        ``step`` (None: the run's phase) into a :class:`BatchRunError` that names the step,
        the cause and what becomes of the run's jobs, the error kept as its cause."""
        try:
            yield
        except (ClientError, BotoCoreError, OSError) as exc:
            cause = f"The run stopped while {step or self._status.phase}: {describe_error(exc)}."
            if self._journal_saved or any(j.arn for j in self._jobs):
                raise BatchRunError(
                    f"{cause} Jobs already submitted go on running on Bedrock. Once the "
                    f"cause is fixed, BatchRun.resume({self.run_id!r}) takes the run up "
                    "where it stopped (no job is submitted twice)."
                ) from exc
            raise BatchRunError(
                f"{cause} Nothing was submitted: start the run again once the cause is fixed."
            ) from exc

    def add_done_callback(self, fn: Callable[[BatchRun], None]) -> None:
        """Call ``fn(run)`` once the run has ended (``run.result`` or ``run.error`` set),
        before ``wait()`` and ``await run`` return; at once if it has already ended."""
        with self._done_lock:
            if not self._ended:
                self._done_callbacks.append(fn)
                return
        fn(self)

    def _call_done_callbacks(self) -> None:
        with self._done_lock:
            self._ended = True
            callbacks, self._done_callbacks = self._done_callbacks, []
        for fn in callbacks:
            with contextlib.suppress(Exception):  # a display problem must never stop a run
                fn(self)

    async def _main(self, clients: Clients, spec: SubmitSpec, prepared: Prepared) -> Result:
        self._loop = asyncio.get_running_loop()
        self._journal_task = None
        c = self.config
        spill: str | None = None
        if self.num_rows > self._frame_rows:  # a large run: its answers on disk
            self.local_results_path.parent.mkdir(parents=True, exist_ok=True)
            # (texts appended to a file, SpilledValues; embeddings a fixed-width row each,
            # SpilledVectors)
            name = "answers.f64" if self.adapter.kind == "embedding" else "answers.utf8"
            spill = str(self.local_results_path.with_name(name))
        results = Results(self.num_rows, self.adapter, spill_path=spill)

        if not self._resumed:
            self._publish("staging", note="Saving the input rows beside the jobs (for resume).")
            try:
                note = await asyncio.to_thread(
                    journal.write_rows, clients.s3, self.layout, self.source, **self._put
                )
            except ClientError as exc:  # the run's first write: a wrong bucket shows here
                raise BatchRunError(
                    f"Cannot write the run's files to {self.layout.root_uri}: "
                    f"{describe_error(exc)}. Check the bucket (bucket=..., or "
                    "BEDROCK_BATCH_BUCKET) and that these credentials may write to it. "
                    "Nothing was submitted."
                ) from exc
            if note:
                self._publish(None, note=note)
        unsubmitted = [j for j in self._jobs if j.arn is None]
        for job in self._jobs:
            job.staged = job.arn is not None
        self._publish("staging", note=f"Staging {len(unsubmitted)} input file(s) to S3.")
        await self._save_journal(clients, "staging")
        self._orchestrator = self._new_orchestrator(clients, spec, results)
        if self._stop.is_set():
            self._orchestrator.request_stop()

        # Jobs are submitted as soon as their input is staged, while the rest is staged.
        failure = await self._orchestrate(self._stage(clients, unsubmitted, "staged"))
        attempt = max((j.attempt for j in self._jobs), default=0)
        while failure is None and not self._stop.is_set() and attempt < c.max_record_retries:
            todo = results.unanswered()
            if len(todo) == 0:
                break
            attempt += 1
            if len(todo) >= c.min_records_per_job:
                jobs = self._retry_jobs(todo, attempt, prepared)
                self._jobs += jobs
                self._publish(
                    None,
                    note=f"Retrying {len(todo):,} failed record(s) in {len(jobs)} new job(s).",
                )
                await self._save_journal(clients, "running")
                failure = await self._orchestrate(self._stage(clients, jobs, None))
            elif c.on_demand_fallback:
                self._publish(None, note=f"Retrying {len(todo):,} record(s) on demand.")
                await self._on_demand(results, todo)
            else:
                results.add_note(
                    todo,
                    f"not retried: {len(todo):,} failed record(s) are fewer than a job's "
                    f"minimum ({c.min_records_per_job:,}); on_demand_fallback=True retries "
                    "them with on-demand calls",
                )
                break

        self._publish("collecting")
        for job in self._jobs:
            if job.status == PENDING:
                results.mark_unanswered(job.rows(), "Not submitted: the run was stopped.")
        with self._step(f"joining the results and writing them to {self.layout.results_uri}"):
            frame, note = await asyncio.to_thread(self._finish_results, clients, results)
        if spill is not None:  # every answer is in the results file now
            results.close()
            with contextlib.suppress(OSError):
                Path(spill).unlink()
        if failure is not None:
            self.result = frame
            await self._save_journal(clients, "failed", wait=True)
            raise BatchRunError(
                f"Job {failure.name} failed: {failure.message or 'no message'}. "
                f"{failure_hint(failure.message)} The run stopped early; what finished is in "
                f"run.result. After fixing the cause, BatchRun.resume({self.run_id!r}) "
                "retries the rest."
            )
        phase = "stopped" if self._stop.is_set() else "done"
        await self._save_journal(clients, phase, wait=True)
        self._publish(phase, note=note, finished=True)
        return frame

    async def _stage(self, clients: Clients, jobs: list[JobState], point: str | None) -> None:
        """Build each job's input file, in input order and one at a time (the rows are read
        in one pass), and upload it while the next is built.  At most
        ``STAGE_CONCURRENCY`` files are held at once, and the next one is built only while
        less than ``STAGE_BYTES`` are, so memory holds a few jobs' lines, not the
        dataset's.  The orchestrator is kicked as each one lands."""
        held = asyncio.Condition()
        holding = {"files": 0, "bytes": 0}

        def room() -> bool:
            return holding["files"] == 0 or (
                holding["files"] < STAGE_CONCURRENCY and holding["bytes"] < STAGE_BYTES
            )

        async def landed(job: JobState) -> None:
            crash_point("staging")
            job.staged = True
            if self._orchestrator is not None:
                self._orchestrator.kick()

        async def upload(job: JobState, body: bytes) -> None:
            try:
                with self._step(f"staging job {job.name}'s input to {job.input_uri}"):
                    await asyncio.to_thread(self._put_job, clients, job, body)
            finally:
                async with held:
                    holding["files"] -= 1
                    holding["bytes"] -= len(body)
                    held.notify_all()
            await landed(job)

        uploads: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        # Files are built on one thread of their own: the memory a build frees stays in that
        # thread's malloc arena for the next build to reuse, rather than in one arena per
        # thread of the shared pool (with 50,000-record jobs, hundreds of MiB kept).
        builder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stage-build")
        try:
            for job in jobs:
                async with held:
                    await held.wait_for(room)
                if any(u.done() and u.exception() for u in uploads):
                    break
                with self._step(f"staging job {job.name}'s input to {job.input_uri}"):
                    body = await loop.run_in_executor(builder, self._job_body, clients, job)
                if body is None:  # sent as it was built
                    await landed(job)
                    continue
                holding["files"] += 1
                holding["bytes"] += len(body)
                uploads.append(asyncio.ensure_future(upload(job, body)))
        finally:
            builder.shutdown(wait=False)
            await asyncio.gather(*uploads)
        await asyncio.to_thread(give_back_memory)  # what building the files freed
        if point is not None:
            crash_point(point)
        await self._save_journal(clients, "running")

    def _job_body(self, clients: Clients, job: JobState) -> bytes | None:
        """A job's input file, built whole up to ``aws.SINGLE_PUT_BYTES`` (to be uploaded
        while the next is built); a larger one is uploaded as it is built, its parts sent
        as they are made, and None returned once it is on S3."""
        pieces = self._checked_size(job, self.record_pieces(job.rows()))
        head, more = gather_pieces(pieces)
        if more:
            self._put_job(clients, job, drained(head, pieces))
            return None
        return b"".join(head)

    def _checked_size(
        self, job: JobState, pieces: Iterator[bytes | bytearray]
    ) -> Iterator[bytes | bytearray]:
        limit = self.config.max_input_file_bytes
        size = 0
        for piece in pieces:
            size += len(piece)
            if size > limit:
                raise BatchRunError(
                    f"Job {job.name}'s input is over max_input_file_bytes={limit:,} bytes"
                    f" ({size:,} built so far): lower max_records_per_job."
                )
            yield piece

    def _put_job(
        self, clients: Clients, job: JobState, body: bytes | Iterable[bytes | bytearray]
    ) -> None:
        bucket, key = job.input_uri[len("s3://") :].split("/", 1)
        put_jsonl(
            clients.s3,
            bucket,
            key,
            body,
            kms_key_id=self.config.kms_key_id,
            bucket_owner=self.config.s3_bucket_owner,
        )

    def _retry_jobs(
        self, todo: npt.NDArray[Any], attempt: int, prepared: Prepared
    ) -> list[JobState]:
        c = self.config
        # the records' estimated bytes, as validation estimated them (a batch read at a time)
        step, columns = self.source.batch_rows, self.text_columns
        lengths = np.concatenate(
            [
                self.text_lengths(self.source.take(todo[i : i + step].tolist(), columns))
                for i in range(0, len(todo), step)
            ]
        )
        chunks = plan_chunks(
            len(todo),
            max_records_per_job=c.max_records_per_job,
            min_records_per_job=c.min_records_per_job,
            record_bytes=prepared.estimate(lengths),
            max_file_bytes=c.max_input_file_bytes,
        )
        return [
            JobState(
                chunk,
                f"{self.run_id}-r{attempt}-{chunk.index:04d}",
                self.layout.input_uri(chunk, attempt),
                positions=[int(p) for p in todo[chunk.start : chunk.stop]],
                attempt=attempt,
            )
            for chunk in chunks
        ]

    def _new_orchestrator(
        self, clients: Clients, spec: SubmitSpec, results: Results
    ) -> Orchestrator:
        layout = self.layout
        gate = asyncio.Semaphore(COLLECT_CONCURRENCY)

        async def collect(job: JobState) -> None:
            if job.job_id is not None:
                prefix = layout.job_output_key(job.job_id)
                where = f"collecting job {job.name}'s output from s3://{layout.bucket}/{prefix}"
                async with gate:
                    with self._step(where):
                        stats = await asyncio.to_thread(
                            collect_job, clients.s3, layout.bucket, prefix, results
                        )
                job.unreadable_lines = stats.malformed
            ended = f"{job.status}: {job.message}" if job.message else job.status
            lost = f", {job.unreadable_lines} unreadable line(s)" if job.unreadable_lines else ""
            results.mark_unanswered(
                job.rows(),
                f"No output line for this record (job {job.name} ended {ended}{lost}).",
            )
            job.collected = True
            await self._save_journal(clients, None)
            crash_point("collected")
            self._publish(None)

        async def submitted(job: JobState) -> None:
            await self._save_journal(clients, None)
            crash_point("submitted")

        c = self.config
        self._collect = collect
        return Orchestrator(
            clients.bedrock,
            spec,
            self._jobs,
            max_concurrent_jobs=c.max_concurrent_jobs,
            poll_interval=c.poll_interval,
            max_poll_interval=c.max_poll_interval,
            on_change=lambda note: self._publish("running", note=note),
            on_submitted=submitted,
            on_job_final=collect,
        )

    async def _orchestrate(self, staging: Awaitable[None]) -> JobState | None:
        """Stage (``staging``) and run every job to its end, collecting each as it ends;
        return the job that Failed, if any."""
        orchestrator = self._orchestrator
        assert orchestrator is not None
        self._publish("running")
        running = asyncio.ensure_future(orchestrator.run())
        try:
            await staging
        except BaseException:
            running.cancel()
            raise
        await running
        # Jobs that were already over when the run (re)started are collected here.
        for job in sorted(self._jobs, key=lambda j: j.attempt):
            if job.final and not job.collected:
                await self._collect(job)
        return orchestrator.failure

    async def _on_demand(self, results: Results, todo: npt.NDArray[Any]) -> None:
        builder = self._builder()
        gate = asyncio.Semaphore(4)

        async def one(pos: int) -> None:
            text = self.texts(self.source.take([pos], self.text_columns)).iloc[0]
            async with gate:
                value = await asyncio.to_thread(self._invoke_raw, builder, str(text))
            if isinstance(value, str):
                results.add_note([pos], f"on-demand retry failed too: {value}")
            else:
                results.set_output(pos, value)

        await asyncio.gather(*(one(int(p)) for p in todo))

    @property
    def _put(self) -> dict[str, Any]:
        return put_options(self.config.kms_key_id, self.config.s3_bucket_owner)

    async def _save_journal(
        self, clients: Clients, phase: str | None, *, wait: bool = False
    ) -> None:
        """Have the journal rewritten with the current state.

        Writes are coalesced by one writer task, so that a burst of submissions or job
        endings costs one or two writes and never holds up the loop; ``wait=True`` returns
        once the state as of now is on S3 (the run's last write)."""
        if phase is not None:
            self._journal_phase = phase
        self._journal_dirty = True
        while True:
            if self._journal_task is None or self._journal_task.done():
                self._journal_task = asyncio.ensure_future(self._journal_writer(clients))
            if not wait:
                return
            await self._journal_task
            if not self._journal_dirty:
                return

    async def _journal_writer(self, clients: Clients) -> None:
        while self._journal_dirty:
            self._journal_dirty = False
            state = {
                "run_id": self.run_id,
                "created_at": self._created_at,
                "phase": self._journal_phase,
                "records": self.num_rows,
                "config": journal.config_to_dict(self.config),
                "jobs": [journal.job_to_dict(j) for j in self._jobs],
            }
            try:
                await asyncio.to_thread(journal.write, clients.s3, self.layout, state, **self._put)
                self._journal_saved = True
            except Exception as exc:  # the run goes on; resume falls back to job names
                self._publish(None, note=f"The run's journal was not saved: {describe_error(exc)}")

    def _finish_results(self, clients: Clients, results: Results) -> tuple[Result, str]:
        """The joined results, written to S3: one DataFrame, or for more than
        ``max_frame_rows`` rows a Parquet file written a batch at a time (never one
        DataFrame) and a dataset over it.  What collecting, and then the join, freed is
        given back to the system before and after (:func:`give_back_memory`)."""
        give_back_memory()
        try:
            return self._join_and_write(clients, results)
        finally:
            give_back_memory()

    def _join_and_write(self, clients: Clients, results: Results) -> tuple[Result, str]:
        if self.num_rows <= self._frame_rows:
            frame = results.to_frame(self.source.frame())
            return frame, self._write_results(clients, frame)
        path = self.local_results_path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._stream_results(results, str(path))
        except (TypeError, ValueError, ArrowError) as exc:  # a column pyarrow cannot store
            raise BatchRunError(
                f"The results could not be written as Parquet ({exc}); the jobs' outputs are "
                f"under {self.layout.output_uri}."
            ) from exc
        self._upload_results_file(clients.s3, str(path), self.layout.results_uri)
        return pa_dataset.dataset(str(path), format="parquet"), (
            f"{self.num_rows:,} rows (over max_frame_rows, {self._frame_rows_why}): results "
            f"written to {self.layout.results_uri} and {path}; wait() returns a pyarrow dataset "
            "over them "
            "(run.iter_batches() reads them a batch at a time)."
        )

    def _upload_results_file(self, s3: Any, path: str, uri: str) -> None:
        """Upload a results Parquet file written on this machine to ``uri``."""
        bucket, key = parse_s3_uri(uri)
        upload(s3, path, bucket, key, ContentType=PARQUET_CONTENT_TYPE, **self._put)

    @property
    def _frame_rows_why(self) -> str:
        """``max_frame_rows`` as the run's note gives it."""
        rows, prepared = self._frame_rows, self._prepared
        if prepared is None or rows >= self.config.frame_rows(self.adapter.kind == "embedding"):
            return f"{rows:,} here"
        mean = prepared.chars // max(prepared.records, 1)
        return f"{rows:,} here, for prompts of {mean:,} characters on average"

    @property
    def _frame_rows(self) -> int:
        """Up to how many rows the results are one DataFrame (``RunConfig.frame_rows``, by
        the prompts' length once the rows are checked)."""
        prepared = self._prepared
        return self.config.frame_rows(
            self.adapter.kind == "embedding",
            rows=0 if prepared is None else prepared.records,
            prompt_chars=0 if prepared is None else prepared.chars,
        )

    @property
    def local_results_path(self) -> Path:
        """Where a large run's results file is kept on this machine."""
        return journal.cache_dir() / self.run_id / "results.parquet"

    def _stream_results(self, results: Results, path: str) -> None:
        """Join and write the results ``PARQUET_BATCH_ROWS`` rows at a time (fewer for wide
        embeddings: :meth:`Results.batch_rows`), each batch encoded and compressed on a
        worker thread (without the GIL) while the next one is joined.  The first batch goes
        through a DataFrame (its schema is the one ``to_frame`` gives, pandas metadata
        included); the others are joined in Arrow when the source can
        (:meth:`_arrow_batch`)."""
        types = results.arrow_types()
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        written: concurrent.futures.Future[None] | None = None
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="write-results")
        try:
            step = results.batch_rows(min(PARQUET_BATCH_ROWS, self.source.batch_rows))
            # (read once, whichever path joins; and read ahead no more than a step's rows)
            for start, raw in self.source.raw_batches(batch_rows=step):
                table = None if schema is None else self._arrow_batch(results, raw, start, schema)
                if table is None:
                    part = results.to_frame(self.source.labelled(raw, start), start)
                    if schema is None:  # (embeddings' type not inferred from every array)
                        schema = parquet_schema(part, len(part))
                        for name, kind in types.items():
                            at = schema.get_field_index(name)
                            schema = schema.set(at, pa.field(name, kind))
                    table = frame_to_arrow(part, schema)
                if writer is None:  # (dictionaries for the columns that gain by them)
                    writer = results_writer(path, schema, use_dictionary=dictionary_columns(table))
                if written is not None:
                    written.result()
                    pa.default_memory_pool().release_unused()  # batches' memory bounded
                written = pool.submit(writer.write_table, table)
            if written is not None:
                written.result()
        finally:
            if written is not None:  # (the writer is closed after its last write)
                concurrent.futures.wait([written])
            pool.shutdown()
            if writer is not None:
                writer.close()

    def _arrow_batch(
        self, results: Results, raw: pd.DataFrame | pa.Table, start: int, schema: pa.Schema
    ) -> pa.Table | None:
        """The rows ``raw`` (from ``read_raw``, starting at position ``start``) joined to
        their results in Arrow, no Python object per value, as :meth:`Results.to_frame`
        and ``Table.from_pandas`` would give them in ``schema``; None when the source is
        not Arrow, the answers are not on disk, or a column does not cast to its type in
        ``schema`` (the DataFrame path then)."""
        if not isinstance(raw, pa.Table):
            return None
        stop = start + raw.num_rows
        answers = results.arrow_columns(start, stop)
        if answers is None:
            return None
        index = pa.Table.from_pandas(
            pd.DataFrame(index=self.source.index[start:stop]), preserve_index=True
        )
        if set(index.column_names) & (set(raw.column_names) | set(answers)):
            return None  # an index named like a column: leave the naming to pandas
        columns = {
            **dict(zip(raw.column_names, raw.columns, strict=True)),
            **answers,  # (replacing input columns of the same name, as to_frame does)
            **dict(zip(index.column_names, index.columns, strict=True)),
        }
        if len(columns) != len(schema):
            return None
        try:
            arrays = [columns[field.name].cast(field.type) for field in schema]
        except (KeyError, ArrowError, TypeError, ValueError):
            return None
        return pa.Table.from_arrays(arrays, schema=schema)

    def _write_results(self, clients: Clients, frame: pd.DataFrame) -> str:
        try:
            upload_parquet(
                clients.s3, frame, self.layout.bucket, self.layout.results_key, self._put
            )
        except (TypeError, ValueError, ArrowError) as exc:  # a column pyarrow cannot store
            return f"Results not written as Parquet: {exc}"
        return f"Results written to {self.layout.results_uri}"

    def to_parquet(
        self, path: str | os.PathLike[str], *, batch_rows: int = PARQUET_BATCH_ROWS
    ) -> str:
        """Write the finished run's results to a local path or an ``s3://`` URI, a row group
        of ``batch_rows`` rows at a time; return where."""
        path = os.fspath(path)
        frame = self._finished_result()
        if not isinstance(frame, pd.DataFrame):  # a large run: its file, as written
            local = self.local_results_path
            if path.startswith("s3://"):
                self._upload_results_file(self.clients.s3, str(local), path)
            else:
                shutil.copyfile(local, path)
            return path
        if path.startswith("s3://"):
            bucket, key = parse_s3_uri(path)
            upload_parquet(self.clients.s3, frame, bucket, key, self._put, batch_rows=batch_rows)
        else:
            write_parquet(frame, path, batch_rows=batch_rows)
        return path

    def iter_batches(self, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[pd.DataFrame]:
        """The finished run's results, ``batch_rows`` rows at a time, in input order (read
        from the results file for a large run)."""
        frame = self._finished_result()
        if not isinstance(frame, pd.DataFrame):
            schema = frame.schema
            pending = pa.Table.from_batches([], schema=schema)
            # one batch read ahead (the default holds 16 of every column)
            batches = frame.to_batches(
                batch_size=batch_rows, batch_readahead=1, fragment_readahead=1
            )
            for batch in batches:
                pending = pa.concat_tables([pending, pa.Table.from_batches([batch])])
                while pending.num_rows >= batch_rows:
                    part: pd.DataFrame = pending.slice(0, batch_rows).to_pandas()
                    yield part
                    pending = pending.slice(batch_rows)
            if pending.num_rows:
                yield pending.to_pandas()
            return
        for start in range(0, len(frame), batch_rows):
            yield frame.iloc[start : start + batch_rows]

    def _finished_result(self) -> Result:
        if self.result is None:
            raise BatchRunError(
                f"Run {self.run_id} has no results yet: wait() for it (or resume it) first."
            )
        return self.result

    def wait(self, timeout: float | None = None) -> Result:
        """Block until the run ends and return the joined DataFrame (for more than
        ``max_frame_rows`` rows, a ``pyarrow.dataset.Dataset`` over the results file)."""
        if self._future is None:
            self.start()
        assert self._future is not None
        return self._future.result(timeout)

    def __await__(self) -> Generator[Any, None, Result]:
        if self._future is None:
            self.start()
        assert self._future is not None
        return asyncio.wrap_future(self._future).__await__()

    def stop(self) -> None:
        """Stop the run's jobs; what finished is collected and returned by ``wait()``.
        Stopping a run that has ended changes nothing."""
        self._stop.set()
        loop, orchestrator = self._loop, self._orchestrator
        if loop is not None and orchestrator is not None:
            # The run's loop is closed once the run has ended: nothing is left to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(orchestrator.request_stop)

    def status(self) -> RunStatus:
        """A snapshot: phase, and per job its status, counts and times."""
        return self._status

    @property
    def done(self) -> bool:
        return self._future is not None and self._future.done()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(status)`` (from the background thread) whenever the run changes."""
        self._listeners.append(listener)
        listener(self._status)

    def _publish(
        self,
        phase: str | None,
        *,
        note: str | None = None,
        started: bool = False,
        finished: bool = False,
    ) -> None:
        old = self._status
        counted = self._counted_rows()
        self._status = RunStatus(
            run_id=self.run_id,
            phase=phase or old.phase,
            total_records=old.total_records if counted is None else counted,
            jobs=tuple(replace(j) for j in self._jobs),
            started_at=time.time() if started else old.started_at,
            finished_at=time.time() if finished else old.finished_at,
            note=note if note is not None else old.note,
        )
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):  # a display problem must never stop a run
                listener(self._status)

    def __repr__(self) -> str:
        return f"<BatchRun {self._status}>"


class _Progress:
    """While a started run reads and checks its rows, its status note says how far it has
    got, ``note(*values)``, at most every ``EVERY_S``: the bytes of a file it downloads or
    converts, the rows it has read (a streamed dataset) or checked.  2.2 million rows take
    a quarter of a minute here, a stream from the Hub or a big download longer."""

    EVERY_S = 0.5

    def __init__(self, run: BatchRun, note: Callable[..., str]) -> None:
        self._run, self._note = run, note
        self._shown = time.monotonic()

    def __call__(self, *values: Any) -> None:
        now = time.monotonic()
        if now - self._shown < self.EVERY_S or self._run._status.phase != "preparing":
            return
        self._shown = now
        self._run._publish(None, note=self._note(*values))


def _bytes_note(what: str, done: int, total: int) -> str:
    """``"Downloading s3://b/k: 0.6 of 2.1 GB."``"""
    unit, scale = ("GB", 1e9) if total >= 1e9 else ("MB", 1e6) if total >= 1e6 else ("kB", 1e3)
    return f"{what}: {min(done, total) / scale:,.1f} of {total / scale:,.1f} {unit}."


class RunPlan:
    """The jobs a validated run will submit."""

    def __init__(self, run: BatchRun) -> None:
        assert run._prepared is not None
        self._prepared = run._prepared
        self.run_id = run.run_id
        self.records = run._prepared.records
        self.chars = run._prepared.chars
        """Characters of every text sent (rendered prompts or texts to embed)."""
        self.jobs = len(run._prepared.chunks)

    def frame(self) -> pd.DataFrame:
        job_bytes = self._prepared.job_bytes
        frame: pd.DataFrame = pd.DataFrame(
            [
                {
                    "job": ch.index,
                    "records": ch.size,
                    "first_row": ch.start,
                    "last_row": ch.stop - 1,
                    "input_bytes": size,
                }
                for ch, size in zip(self._prepared.chunks, job_bytes, strict=True)
            ]
        )
        return frame

    def __repr__(self) -> str:
        return f"<RunPlan {self.run_id}: {self.records:,} records in {self.jobs} job(s)>"


def list_runs(
    bucket: str | None = None, *, s3_prefix: str = "bedrock-batch", region: str | None = None
) -> pd.DataFrame:
    """The runs whose journals are under ``s3://<bucket>/<s3_prefix>/``, newest first
    (``run_id``, model, phase, records, jobs, jobs done, times): what ``resume`` takes."""
    probe = RunConfig(model_id="-", bucket=bucket, s3_prefix=s3_prefix, region=region)
    clients = Clients.create(region)
    return journal.list_runs(clients.s3, probe.resolved_bucket(), s3_prefix)


def run_batch(
    data: Any,
    model_id: str,
    prompt: str | None = None,
    *,
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Run a whole batch and return the joined DataFrame (blocking).

    Shows the live progress (:class:`~bedrock_batch_nb.progress.RunProgress`: widgets in
    Jupyter, text bars elsewhere) unless ``progress=False``.
    """
    run = BatchRun(data, model_id, prompt, **options)
    run.validate()
    if progress:
        from .progress import RunProgress

        RunProgress(run)
    return run.start().wait()
