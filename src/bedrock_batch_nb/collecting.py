"""How results come back: read each job's ``*.jsonl.out`` and ``manifest.json.out``, parse
successes and error lines with the model's adapter, and join them to the input rows on
``recordId``.

Output order is not input order, lines may be blank, and a line may be damaged: every
line is handled on its own, so one bad line never takes the other rows down with it.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .models import ModelAdapter, ModelOutput
from .staging import position_of

RESULT_COLUMNS = ("response", "embedding", "error", "input_tokens", "output_tokens")


@dataclass
class OutputStats:
    """What one job's output files held."""

    lines: int = 0
    successes: int = 0
    errors: int = 0
    malformed: int = 0
    unknown_record_ids: int = 0
    manifest: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)

    def add(self, other: OutputStats) -> None:
        self.lines += other.lines
        self.successes += other.successes
        self.errors += other.errors
        self.malformed += other.malformed
        self.unknown_record_ids += other.unknown_record_ids
        self.files += other.files


class Results:
    """Per-row results held by input position until they become a DataFrame."""

    def __init__(self, n_rows: int, adapter: ModelAdapter) -> None:
        self.n_rows = n_rows
        self.adapter = adapter
        self.values: list[Any] = [None] * n_rows  # response text or embedding
        self.errors: list[str | None] = [None] * n_rows
        self.input_tokens = np.full(n_rows, np.nan)
        self.output_tokens = np.full(n_rows, np.nan)
        self.answered = np.zeros(n_rows, dtype=bool)
        """Rows with a successful answer; a later success replaces an earlier error."""

    @property
    def value_column(self) -> str:
        return "embedding" if self.adapter.kind == "embedding" else "response"

    def add_lines(self, lines: Iterable[bytes | str]) -> OutputStats:
        """Parse output lines into the rows they belong to."""
        stats = OutputStats()
        for raw in lines:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            if not text or text.isspace():  # (no stripped copy of a 3 KB line)
                continue
            stats.lines += 1
            fields = _fields(text)
            if fields is None:
                stats.malformed += 1
                continue
            rid, output, error = fields
            pos = position_of(rid) if isinstance(rid, str) else None
            if pos is None or pos >= self.n_rows:
                stats.unknown_record_ids += 1
                continue
            if output is not None:
                try:
                    out = self.adapter.parse_response(output)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    if not self.answered[pos]:
                        self.errors[pos] = f"Unreadable model output: {exc}"
                    stats.errors += 1
                    continue
                self.set_output(pos, out)
                stats.successes += 1
            elif error is not None:
                if not self.answered[pos]:
                    self.errors[pos] = error_message(error)
                stats.errors += 1
            else:
                stats.malformed += 1
        return stats

    def set_output(self, pos: int, out: ModelOutput) -> None:
        """Record a successful answer for the row at ``pos`` (replacing any earlier error)."""
        self.values[pos] = out.embedding if self.adapter.kind == "embedding" else out.response
        self.errors[pos] = None
        self.input_tokens[pos] = np.nan if out.input_tokens is None else out.input_tokens
        self.output_tokens[pos] = np.nan if out.output_tokens is None else out.output_tokens
        self.answered[pos] = True

    def add_note(self, positions: Iterable[int], note: str) -> None:
        """Append ``note`` to the errors of unanswered rows (why they stay unanswered)."""
        for pos in positions:
            if not self.answered[pos]:
                error = self.errors[pos]
                self.errors[pos] = f"{error} ({note})" if error else note.capitalize()

    def mark_unanswered(self, positions: Iterable[int], message: str) -> int:
        """Give the rows at ``positions`` that have neither an answer nor an error line an
        error saying why; return how many."""
        missing = [p for p in positions if not self.answered[p] and self.errors[p] is None]
        for pos in missing:
            self.errors[pos] = message
        return len(missing)

    def unanswered(self) -> np.ndarray:
        """Positions of the rows without a successful answer (failed or missing)."""
        return np.flatnonzero(~self.answered)

    def to_frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The input rows (index and columns as given) with the result columns after them."""
        out: pd.DataFrame = rows.copy()
        out[self.value_column] = pd.Series(self.values, index=rows.index, dtype=object)
        out["error"] = pd.Series(self.errors, index=rows.index, dtype=object)
        out["input_tokens"] = pd.array(_as_int(self.input_tokens), dtype="Int64")
        out["output_tokens"] = pd.array(_as_int(self.output_tokens), dtype="Int64")
        return out


PARQUET_BATCH_ROWS = 10_000
"""Rows converted to Arrow at a time when writing Parquet (one row group each): converting
Python strings holds the GIL, and this keeps each hold to tens of milliseconds, so that a
notebook's event loop stays responsive while a run writes its results."""


def write_parquet(frame: pd.DataFrame, sink: Any, *, batch_rows: int = PARQUET_BATCH_ROWS) -> None:
    """Write ``frame`` as Parquet, converting ``batch_rows`` rows at a time (one row group
    each), so that the Arrow copy of a large result never exists whole."""
    import pyarrow.parquet as pq

    schema = parquet_schema(frame, batch_rows)
    with pq.ParquetWriter(sink, schema) as writer:
        for start in range(0, max(len(frame), 1), batch_rows):
            part = frame.iloc[start : start + batch_rows]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=True))


def parquet_schema(frame: pd.DataFrame, sample_rows: int) -> pa.Schema:
    """The Arrow schema of ``frame``, inferred from its first rows (inferring it from every
    row converts them all); a column still without a type there takes the type of its
    first value."""
    schema = pa.Schema.from_pandas(frame.iloc[:sample_rows], preserve_index=True)
    for i, typed in enumerate(schema):
        if pa.types.is_null(typed.type) and typed.name in frame.columns:
            column = frame[typed.name]
            present = column.notna().to_numpy()
            if isinstance(column, pd.Series) and present.any():
                first = column.iloc[int(present.argmax())]
                schema = schema.set(i, typed.with_type(pa.array([first]).type))
    return schema


def upload_parquet(
    s3: Any,
    frame: pd.DataFrame,
    bucket: str,
    key: str,
    put: dict[str, Any],
    *,
    batch_rows: int = PARQUET_BATCH_ROWS,
) -> None:
    """Write ``frame`` as Parquet to a temporary file and upload it (multipart when large)."""
    with tempfile.TemporaryFile() as spool:
        write_parquet(frame, spool, batch_rows=batch_rows)
        spool.seek(0)
        s3.upload_fileobj(spool, bucket, key, ExtraArgs=put or None)


def _as_int(values: np.ndarray) -> list[int | None]:
    return [None if np.isnan(v) else int(v) for v in values]


_DECODER = json.JSONDecoder()
_OPENS = re.compile(r"\s*\{")


def _value_after(text: str, key: str) -> tuple[bool, Any, int]:
    """The value of top-level ``key`` in a JSON object line and where it ends, decoding
    only that value.

    An unescaped ``"key"`` followed by ``:`` can only be a key: inside a JSON string the
    quotes are escaped, and the echoed request bodies have no keys of these names.
    """
    at = text.find(f'"{key}"')
    if at < 0:
        return False, None, 0
    colon = at + len(key) + 2
    while colon < len(text) and text[colon] in " \t":
        colon += 1
    if colon >= len(text) or text[colon] != ":":
        raise ValueError(f"no ':' after {key}")
    start = colon + 1
    while start < len(text) and text[start] in " \t":
        start += 1
    value, end = _DECODER.raw_decode(text, start)
    return True, value, end


def _fields(text: str) -> tuple[Any, Any, Any] | None:
    """``(recordId, modelOutput, error)`` of an output line; None for a line that is not a
    whole record.  The echoed ``modelInput`` (most of the line) is not decoded when it
    comes before the other keys, as Bedrock writes them; otherwise the line is decoded."""
    try:
        found_id, rid, end_id = _value_after(text, "recordId")
        found_out, output, end_out = _value_after(text, "modelOutput")
        found_err, error, end_err = (False, None, 0) if found_out else _value_after(text, "error")
        last = max(end_id, end_out, end_err)
        whole = _OPENS.match(text) is not None and text[last:].strip() == "}"
        if found_id and (found_out or found_err) and whole:
            return rid, output, error
        record = json.loads(text)  # another key order, or not a record: decode it all
    except ValueError:
        return None
    if not isinstance(record, dict) or "recordId" not in record:
        return None
    return record["recordId"], record.get("modelOutput"), record.get("error")


def error_message(error: Any) -> str:
    """``{"errorCode": 400, "errorMessage": "..."}`` → ``"400: ..."``."""
    if isinstance(error, dict):
        code = error.get("errorCode")
        message = error.get("errorMessage") or json.dumps(error)
        return f"{code}: {message}" if code is not None else str(message)
    return str(error)


def collect_job(s3: Any, bucket: str, job_prefix: str, results: Results) -> OutputStats:
    """Read every ``.jsonl.out`` file and the manifest under ``job_prefix`` into ``results``."""
    stats = OutputStats()
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=job_prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("manifest.json.out"):
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                try:
                    stats.manifest = json.loads(body)
                except ValueError:
                    stats.manifest = None
            elif key.endswith(".jsonl.out"):
                body = s3.get_object(Bucket=bucket, Key=key)["Body"]
                stats.add(results.add_lines(body.iter_lines()))
                stats.files.append(key)
    return stats
