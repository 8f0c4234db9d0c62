"""How results come back: read each job's ``*.jsonl.out`` and ``manifest.json.out``, parse
successes and error lines with the model's adapter, and join them to the input rows on
``recordId``.

Output order is not input order, lines may be blank, and a line may be damaged: every
line is handled on its own, so one bad line never takes the other rows down with it.

For speed, a file is read in blocks of lines that Arrow's JSON reader parses on its
threads, without the echoed ``modelInput`` (most of each line, cut out first), for the
response shapes it can read exactly as the adapter does (Claude, Nova, Converse, Titan
embeddings); a block with anything else in it (a damaged line, an unusual value) is
read again line by line.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .aws import PARQUET_CONTENT_TYPE, upload
from .models import (
    AnthropicAdapter,
    ConverseAdapter,
    ModelAdapter,
    ModelOutput,
    NovaAdapter,
    TitanEmbedAdapter,
)
from .prompts import holds_str_objects, str_array
from .staging import RECORD_ID_PREFIX, position_of

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


CONVERT_ROWS = 2_000
"""Answers and result rows converted between Python and Arrow at a time: converting
Python strings holds the GIL, and so does the kernel's zeroing of the fresh memory the
conversion writes to.  Writing 200,000 SimpleCoT results, 10,000 rows at once held it for
56-113 ms at a time in half the writes; 2,000 rows, at most 6-27 ms, so that a notebook's
event loop stays responsive while a run collects and writes its results."""
CONVERT_BYTES = 3 << 20
"""... and at most about this many bytes of them (2,000 SimpleCoT rows are 2.6 MB; of
1,024-number embeddings, 384 rows: 2,000 held the GIL for 120 ms)."""


def _last_of_each(positions: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The distinct values of ``positions``, in increasing order, and the index of the last
    occurrence of each (where a row is written more than once, the last write wins)."""
    found, from_end = np.unique(positions[::-1], return_index=True)
    return found, len(positions) - 1 - from_end


class _AnswersFile:
    """A local file that a large run's answers are written to as they come, and read back
    from by range of rows for the final join; closed by :meth:`close` (its path stays the
    caller's to delete)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: io.FileIO | None = None
        self._file = io.FileIO(path, "w+")  # (unbuffered: each write lands)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __del__(self) -> None:
        if hasattr(self, "_lock"):  # (not when opening the file failed)
            self.close()

    def _opened(self) -> io.FileIO:
        """The file, while it is open (the lock held)."""
        if self._file is None:
            raise RuntimeError("the answers' file is closed")
        return self._file


class SpilledValues(_AnswersFile):
    """Answers of text kept in a local file instead of memory (for a large run): each
    answer's UTF-8 bytes are appended to the file as they come (a block's Arrow array with
    one write, :meth:`put_many`), and where they lie is kept per position (an offset and a
    length: 12 bytes a row).  A range of positions is read back answer by answer from the
    file, whatever order the answers came in: a job's lines come shuffled, so in row groups
    a range's answers would lie in every group written while its job was collected, and
    reading them back would decode (and hold) the whole job's answers.  The last answer
    given for a position wins; an answer that is not UTF-8 (a lone surrogate) is kept
    with ``?`` in its place."""

    def __init__(self, path: str, value_type: pa.DataType, n_rows: int) -> None:
        super().__init__(path)
        self.value_type = value_type
        self._offsets = np.zeros(n_rows, dtype=np.int64)
        self._lengths = np.full(n_rows, -1, dtype=np.int32)  # -1: no answer
        self._end = 0

    def __setitem__(self, pos: int, value: Any) -> None:
        with self._lock:
            if value is None:
                self._lengths[pos] = -1
                return
            data = str(value).encode("utf-8", "replace")
            self._offsets[pos] = self._append(data)
            self._lengths[pos] = len(data)

    def put_many(self, positions: npt.NDArray[Any], values: pa.Array | pa.ChunkedArray) -> None:
        """Record ``values[i]`` (a string, or null) as the answer at ``positions[i]``; a
        later one for a position wins."""
        positions = np.asarray(positions, dtype=np.int64)
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        at = 0
        for chunk in chunks:
            here = positions[at : at + len(chunk)]
            at += len(chunk)
            if not len(chunk):
                continue
            if not pa.types.is_large_string(chunk.type):
                chunk = chunk.cast(pa.large_string())
            _, offsets_buffer, data_buffer = chunk.buffers()
            offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
                chunk.offset : chunk.offset + len(chunk) + 1
            ]
            first, last = int(offsets[0]), int(offsets[-1])
            lengths = np.diff(offsets).astype(np.int32)
            if chunk.null_count:
                lengths[~np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False))] = -1
            found, latest = _last_of_each(here)
            with self._lock:
                start = self._append(memoryview(data_buffer)[first:last] if last > first else b"")
                self._offsets[found] = start + (offsets[latest] - first)
                self._lengths[found] = lengths[latest]

    def _append(self, data: bytes | memoryview) -> int:
        """Write ``data`` at the file's end; where it starts (the lock held)."""
        start = self._end
        _write_at(self._opened(), data, start)
        self._end = start + len(data)
        return start

    def arrow(self, start: int, stop: int) -> pa.Array:
        """The answers of positions ``start`` to ``stop`` as one Arrow array, null where a
        position has none."""
        with self._lock:
            lengths = self._lengths[start:stop]
            offsets = self._offsets[start:stop]
            valid = lengths >= 0
            bounds = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(np.where(valid, lengths, 0), out=bounds[1:])
            # (in Arrow's pool, as the rest of the batch's arrays: returned to it with them)
            data = pa.allocate_buffer(int(bounds[-1]))
            if data.size:
                file = self._opened()
                # Read answer by answer, straight into the buffer (a mapping of the file
                # would put the pages around each answer in the RSS too, 118 MiB for
                # 10,000 answers of 2.4 KB).
                out = memoryview(data).cast("B")
                stored = lengths > 0
                try:
                    for to, at, size in zip(
                        bounds[:-1][stored].tolist(),
                        offsets[stored].tolist(),
                        lengths[stored].tolist(),
                        strict=True,
                    ):
                        _read_at(file, out[to : to + size], at)
                finally:
                    out.release()
        validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if not valid.all() else None
        array = pa.Array.from_buffers(
            pa.large_string(),
            len(lengths),
            [validity, pa.py_buffer(bounds), data],
            null_count=int(len(valid) - valid.sum()),
        )
        return array if array.type == self.value_type else array.cast(self.value_type)

    def __getitem__(self, key: slice) -> list[Any]:
        start, stop = key.start or 0, key.stop
        answers = self.arrow(start, stop)
        return [
            value
            for i in range(0, len(answers), CONVERT_ROWS)
            for value in _python_values(answers.slice(i, CONVERT_ROWS))
        ]


def _write_at(file: io.FileIO, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` to ``file`` at ``offset`` (a raw write may take part of it)."""
    file.seek(offset)
    view = memoryview(data)
    while view:
        view = view[file.write(view) or 0 :]


def _read_at(file: io.FileIO, into: memoryview, offset: int) -> None:
    """Fill ``into`` from ``file`` at ``offset``: one ``preadv`` call where the system has
    it (a seek and a read elsewhere)."""
    fd = file.fileno()
    while into:
        if _PREADV:
            got = os.preadv(fd, [into], offset)
        else:
            file.seek(offset)
            got = file.readinto(into) or 0
        if not got:
            raise RuntimeError("the answers' file ended early")
        into, offset = into[got:], offset + got


_PREADV = hasattr(os, "preadv")


class SpilledVectors(_AnswersFile):
    """Embeddings kept in a local file instead of memory (for a large run): one row of
    ``dimensions`` float64 numbers a position, written in place as answers come, read back
    by range of positions.

    Output lines come in any order, so a range of rows has its answers spread over a whole
    job's output; in row groups, reading a range back would decode (and hold) every group
    written while that job was collected: for a 50,000-record job of 1,024-number
    embeddings, 400 MB.  Here each answer has its place, so reading a range is one read of
    that range and nothing else is held (texts, of any length, are appended instead and
    found by their offset: :class:`SpilledValues`).  The number of dimensions is the
    first answer's; an answer of another length (not one Bedrock gives within one run) is
    kept in memory instead.  The file is sparse: rows without an answer take no disk."""

    _NONE, _IN_FILE, _HELD = 0, 1, 2

    def __init__(self, path: str, n_rows: int) -> None:
        super().__init__(path)
        self.value_type = pa.list_(pa.float64())
        self.dimensions: int | None = None
        self._where = np.zeros(n_rows, dtype=np.int8)  # _NONE, _IN_FILE or _HELD
        self._held: dict[int, npt.NDArray[np.float64]] = {}

    def __setitem__(self, pos: int, value: Any) -> None:
        if value is None:
            with self._lock:
                self._where[pos] = self._NONE
                self._held.pop(pos, None)
            return
        vector = np.asarray(value, dtype=np.float64).reshape(-1)
        self._write(np.array([pos], dtype=np.int64), vector.reshape(1, -1))

    def put_many(self, positions: npt.NDArray[Any], values: pa.Array | pa.ChunkedArray) -> None:
        """Record ``values[i]`` (a list of numbers, or null) as the answer at
        ``positions[i]``; a later one for a position wins."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        positions = np.asarray(positions, dtype=np.int64)
        lengths = pc.fill_null(pc.list_value_length(values), -1).to_numpy()
        flat = pc.list_flatten(values)
        if values.null_count or flat.null_count or len(set(lengths)) > 1:
            for pos, vector in zip(positions.tolist(), _python_values(values), strict=True):
                self[pos] = vector  # (unusual: a null, or answers of several lengths)
            return
        if not len(positions):
            return
        numbers = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64)
        self._write(positions, numbers.reshape(len(positions), -1))

    def _write(self, positions: npt.NDArray[np.int64], rows: npt.NDArray[np.float64]) -> None:
        with self._lock:
            file = self._opened()
            if self.dimensions is None:
                self.dimensions = rows.shape[1]
            if rows.shape[1] != self.dimensions:
                for pos, row in zip(positions.tolist(), rows, strict=True):
                    self._held[pos] = row.copy()
                    self._where[pos] = self._HELD
                return
            # the last answer of each position, in position order: runs of consecutive
            # positions are written with one call each
            found, last = _last_of_each(positions)
            ordered = rows[last]
            breaks = np.flatnonzero(np.diff(found) != 1) + 1
            width = self.dimensions * 8
            for lo, hi in zip([0, *breaks.tolist()], [*breaks.tolist(), len(found)], strict=True):
                data = np.ascontiguousarray(ordered[lo:hi]).data.cast("B")
                _write_at(file, data, int(found[lo]) * width)
            self._where[found] = self._IN_FILE
            for pos in found[np.isin(found, list(self._held))].tolist() if self._held else []:
                del self._held[pos]

    def arrow(self, start: int, stop: int) -> pa.Array:
        """The answers of positions ``start`` to ``stop`` as one Arrow array, null where a
        position has none."""
        with self._lock:
            where = self._where[start:stop].copy()
            n = len(where)
            dims = self.dimensions or 0
            numbers = np.zeros(n * dims, dtype=np.float64)  # (past the file's end: zeros)
            if self._file is not None and n and dims:
                self._file.seek(start * dims * 8)
                into = numbers.data.cast("B")
                while into:
                    got = self._file.readinto(into) or 0
                    if not got:
                        break
                    into = into[got:]
            other = np.flatnonzero(where == self._HELD) + start
            held = {p: self._held[p] for p in other.tolist()}
        if held:  # unusual: answers of another length
            rows = numbers.reshape(n, dims)
            values: list[Any] = [
                held[start + i] if w == self._HELD else rows[i] if w == self._IN_FILE else None
                for i, w in enumerate(where.tolist())
            ]
            return pa.array(values, self.value_type)
        offsets = pa.array(np.arange(n + 1, dtype=np.int64) * dims)
        if n * dims < 2**31:  # (a list array's offsets are 32-bit)
            offsets = offsets.cast(pa.int32())
        vectors = pa.LargeListArray if offsets.type == pa.int64() else pa.ListArray
        array = vectors.from_arrays(offsets, numbers, mask=pa.array(where != self._IN_FILE))
        return array if array.type == self.value_type else array.cast(self.value_type)

    def __getitem__(self, key: slice) -> list[Any]:
        start, stop = key.start or 0, key.stop
        return _python_values(self.arrow(start, stop))


SPILLED = (SpilledValues, SpilledVectors)
"""The kinds of answers kept on disk: texts, embeddings."""


class Results:
    """Per-row results held by input position until they become a DataFrame (for a large
    run, the answers themselves in a local file: ``spill_path``)."""

    def __init__(
        self, n_rows: int, adapter: ModelAdapter, *, spill_path: str | None = None
    ) -> None:
        self.n_rows = n_rows
        self.adapter = adapter
        self.values: Any  # response text or embedding of each row
        if spill_path is None:
            self.values = np.full(n_rows, None, dtype=object)
        elif self.value_column == "embedding":
            self.values = SpilledVectors(spill_path, n_rows)
        else:
            self.values = SpilledValues(spill_path, self.arrow_types()[self.value_column], n_rows)
        self.errors: npt.NDArray[np.object_] = np.full(n_rows, None, dtype=object)
        """Why each row has no answer (None: it has one, or no line was read for it)."""
        self.input_tokens = np.full(n_rows, np.nan)
        self.output_tokens = np.full(n_rows, np.nan)
        self.answered = np.zeros(n_rows, dtype=bool)
        """Rows with a successful answer; a later success replaces an earlier error."""

    @property
    def value_column(self) -> str:
        return "embedding" if self.adapter.kind == "embedding" else "response"

    def add_lines(self, lines: Iterable[bytes | str]) -> OutputStats:
        """Parse output lines into the rows they belong to.

        ``lines`` may also be a binary file (anything with ``read``): it is then read a block
        at a time.  Blocks of lines go through Arrow's JSON reader when the model's response
        shape allows it (the echoed ``modelInput`` is skipped, not built); a block that it
        cannot read exactly as :meth:`add_line` would (a damaged line, an odd value) is read
        again line by line, so one bad line never takes the other rows down with it."""
        stats = OutputStats()
        shape = _fast_shape(self.adapter)
        if shape is None:
            for block, originals in _blocks(lines):
                for raw in originals if originals is not None else _split_lines(block):
                    self.add_line(raw, stats)
            return stats
        for block, originals, read in _read_ahead(_blocks(lines), shape):
            if read is not None and self._add_block(read, shape, stats):
                continue
            for raw in originals if originals is not None else _split_lines(block):
                self.add_line(raw, stats)
        pa.default_memory_pool().release_unused()  # what parsing held, back to the system
        return stats

    def add_line(self, raw: bytes | str, stats: OutputStats) -> None:
        """Parse one output line into its row, counting it in ``stats``."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not text or text.isspace():  # (no stripped copy of a 3 KB line)
            return
        stats.lines += 1
        fields = _fields(text)
        if fields is None:
            stats.malformed += 1
            return
        rid, output, error = fields
        pos = position_of(rid) if isinstance(rid, str) else None
        if pos is None or pos >= self.n_rows:
            stats.unknown_record_ids += 1
            return
        if output is not None:
            try:
                out = self.adapter.parse_response(output)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                if not self.answered[pos]:
                    self.errors[pos] = f"Unreadable model output: {exc}"
                stats.errors += 1
                return
            self.set_output(pos, out)
            stats.successes += 1
        elif error is not None:
            if not self.answered[pos]:
                self.errors[pos] = error_message(error)
            stats.errors += 1
        else:
            stats.malformed += 1

    def _add_block(self, read: _Block, shape: _AnyShape, stats: OutputStats) -> bool:
        """Record a block of lines read by Arrow; False (nothing recorded) when the block
        holds anything :meth:`add_line` might read differently, to be read line by line."""
        n = len(read.positions)
        positions = read.positions
        known = (positions >= 0) & (positions < self.n_rows)
        success = known & read.has_output
        failed = known & ~read.has_output & read.has_error
        answers: pa.Array | None = None
        if success.any():
            answers = shape.values(read.output, success)
            if answers is None:
                return False
        messages: list[str] = []
        if failed.any():
            found_messages = _error_messages(read.error, failed)
            if found_messages is None:
                return False
            messages = found_messages
        # Nothing recorded until here: now the block is committed, in line order.
        done = np.flatnonzero(success)
        if len(done):
            assert answers is not None
            at = positions[done]
            _, last = _last_of_each(at)  # the last line of a row wins, as line by line
            values = self.values
            if isinstance(values, SPILLED):  # (a large run's answers stay in Arrow)
                values.put_many(at, answers)
            elif pa.types.is_list(answers.type):  # embeddings: an array each
                for pos, value in zip(at.tolist(), _python_values(answers), strict=True):
                    values[pos] = value
            else:  # texts: the block's strings made in one call, stored in one
                values[at[last]] = answers.to_numpy(zero_copy_only=False)[last]
            self.errors[at] = None
            input_tokens, output_tokens = shape.tokens(read.output)
            self.input_tokens[at[last]] = input_tokens[done[last]]
            self.output_tokens[at[last]] = output_tokens[done[last]]
            self.answered[at] = True
        # an error line after a success (or before one, in this block) changes nothing
        for pos, message in zip(positions[np.flatnonzero(failed)].tolist(), messages, strict=True):
            if not self.answered[pos]:
                self.errors[pos] = message
        stats.lines += n
        stats.successes += len(done)
        stats.errors += len(messages)
        stats.unknown_record_ids += int(n - known.sum())
        stats.malformed += int((known & ~read.has_output & ~read.has_error).sum())
        return True

    def set_output(self, pos: int, out: ModelOutput) -> None:
        """Record a successful answer for the row at ``pos`` (replacing any earlier error)."""
        if self.adapter.kind == "embedding":
            # a float64 array: 8 bytes a dimension, where a list of floats takes 32 (and what
            # the row reads back as from the results' Parquet)
            self.values[pos] = None if out.embedding is None else np.asarray(out.embedding, float)
        else:
            self.values[pos] = out.response
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

    def close(self) -> None:
        """Close the answers' file, if they are on disk (its path stays the caller's)."""
        if isinstance(self.values, SPILLED):
            self.values.close()

    def unanswered(self) -> npt.NDArray[Any]:
        """Positions of the rows without a successful answer (failed or missing)."""
        return np.flatnonzero(~self.answered)

    def to_frame(self, rows: pd.DataFrame, start: int = 0) -> pd.DataFrame:
        """The input rows (index and columns as given) with the result columns after them;
        ``rows`` may be the slice of the input that starts at position ``start``."""
        stop = start + len(rows)
        out: pd.DataFrame = rows.copy()
        out[self.value_column] = pd.Series(self.values[start:stop], index=rows.index, dtype=object)
        out["error"] = pd.Series(self.errors[start:stop], index=rows.index, dtype=object)
        out["input_tokens"] = pd.array(_as_int(self.input_tokens[start:stop]), dtype="Int64")
        out["output_tokens"] = pd.array(_as_int(self.output_tokens[start:stop]), dtype="Int64")
        return out

    def arrow_columns(self, start: int, stop: int) -> dict[str, Any] | None:
        """The result columns of positions ``start`` to ``stop`` as Arrow arrays, when the
        answers are on disk (None otherwise: :meth:`to_frame` then)."""
        if not isinstance(self.values, SPILLED):
            return None
        return {
            self.value_column: self.values.arrow(start, stop),
            "error": pa.array(self.errors[start:stop], pa.string()),
            "input_tokens": _int_array(self.input_tokens[start:stop]),
            "output_tokens": _int_array(self.output_tokens[start:stop]),
        }

    def batch_rows(self, rows: int) -> int:
        """Rows of a results file's row group: ``rows``, fewer for wide embeddings kept
        on disk (``BATCH_BYTES`` of numbers)."""
        dimensions = self.values.dimensions if isinstance(self.values, SpilledVectors) else None
        if not dimensions:
            return rows
        return max(1, min(rows, BATCH_BYTES // (8 * dimensions)))

    def arrow_types(self) -> dict[str, pa.DataType]:
        """The result columns' Arrow types (so that a file written a batch at a time has one
        schema even when its first batch holds no answer or no error)."""
        value = pa.list_(pa.float64()) if self.adapter.kind == "embedding" else pa.string()
        return {
            self.value_column: value,
            "error": pa.string(),
            "input_tokens": pa.int64(),
            "output_tokens": pa.int64(),
        }


PARQUET_BATCH_ROWS = 10_000
"""Rows of a results file's row group, converted to Arrow and written at a time."""
BATCH_BYTES = 16 << 20
"""A results file's row group holds about this many bytes at most, fewer rows than
``PARQUET_BATCH_ROWS`` when they are wide: 2,048 rows of 1,024-number embeddings (10,000
would be 80 MB, held two or three times over while one group is written and the next
converted); 10,000 rows of SimpleCoT's texts are 13 MB."""


def frame_to_arrow(
    frame: pd.DataFrame, schema: pa.Schema, measured: tuple[int, int] | None = None
) -> pa.Table:
    """``frame`` (with its index) as an Arrow table of ``schema``, converted
    ``CONVERT_ROWS`` rows at a time (fewer when rows are wide: ``CONVERT_BYTES``;
    ``measured``: :func:`_measured` of rows like these, when the caller has it)."""
    step = _rows_within(frame, CONVERT_ROWS, CONVERT_BYTES, measured)
    parts = [
        _table_of(frame.iloc[start : start + step], schema)
        for start in range(0, max(len(frame), 1), step)
    ]
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


_STRING_TYPES = (pa.string(), pa.large_string())


def _table_of(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as an Arrow table of ``schema``, its columns of Python ``str`` (the
    caller's texts, the answers) encoded by :func:`prompts.str_array`, which leaves no
    UTF-8 copy behind in each ``str`` the way ``Table.from_pandas`` does."""
    texts = {}
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        at = schema.get_field_index(str(frame.columns[i]))  # (-1: not found or not one)
        if at >= 0 and schema.types[at] in _STRING_TYPES and holds_str_objects(column):
            array = str_array(column.to_numpy(dtype=object), missing=True)
            if array is not None:
                texts[i] = pd.arrays.ArrowExtensionArray(array)
    if texts:
        frame = frame.copy(deep=False)
        for i, values in texts.items():
            frame.isetitem(i, values)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=True, nthreads=1)
    # the metadata of the frame as given (the texts read back as the dtype they had)
    return table.replace_schema_metadata(schema.metadata)


RESULTS_COMPRESSION = ("zstd", 1)
"""How results files are compressed (codec, level; see :func:`results_writer`).  zstd at
level 1 writes about as fast as snappy (50,000 SimpleCoT results: 0.24 against 0.20 s;
uncompressed, 0.06 s) a file a third smaller (24 against 37 MiB; 60 MiB uncompressed),
less to upload and to store, that reads faster (0.04 against 0.07 s); pandas, DuckDB,
Polars, Spark and Athena read it."""


def results_writer(sink: Any, schema: pa.Schema, **options: Any) -> Any:
    """A ``pyarrow.parquet.ParquetWriter`` for a results file (``RESULTS_COMPRESSION``)."""
    import pyarrow.parquet as pq

    codec, level = RESULTS_COMPRESSION
    return pq.ParquetWriter(sink, schema, compression=codec, compression_level=level, **options)


def write_parquet(
    frame: pd.DataFrame,
    sink: Any,
    *,
    batch_rows: int = PARQUET_BATCH_ROWS,
) -> None:
    """Write ``frame`` as Parquet, converting ``batch_rows`` rows at a time (one row group
    each; fewer when rows are wide, ``BATCH_BYTES``), so that the Arrow copy of a large
    result never exists whole."""
    measured = _measured(frame)  # (once: every batch's rows are like these)
    batch_rows = _rows_within(frame, batch_rows, BATCH_BYTES, measured)
    schema = parquet_schema(frame, batch_rows)
    tables = (
        frame_to_arrow(frame.iloc[start : start + batch_rows], schema, measured)
        for start in range(0, max(len(frame), 1), batch_rows)
    )
    first = next(tables)
    dictionary = dictionary_columns(first)
    # Each row group is encoded and compressed on a worker thread (without the GIL) while
    # the next one is converted.
    with (
        results_writer(sink, schema, use_dictionary=dictionary) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="write-parquet") as pool,
    ):
        written = pool.submit(writer.write_table, first)
        for table in tables:
            written.result()
            written = pool.submit(writer.write_table, table)
        written.result()


SAMPLE_ROWS = 64
"""Rows converted to measure how many bytes a frame's rows take in Arrow."""


def _measured(frame: pd.DataFrame) -> tuple[int, int]:
    """The Arrow bytes of ``frame``'s first ``SAMPLE_ROWS`` rows and how many rows that is
    (0 rows: they do not convert; the write itself will say what it cannot store)."""
    first = _with_copied_texts(frame.iloc[:SAMPLE_ROWS])  # (the caller's str left as they are)
    try:
        size: int = pa.Table.from_pandas(first, preserve_index=True).nbytes
    except (TypeError, ValueError, pa.ArrowException):
        return 0, 0
    return size, len(first)


def _rows_within(
    frame: pd.DataFrame, rows: int, budget: int, measured: tuple[int, int] | None = None
) -> int:
    """``rows``, or fewer so that that many of ``frame``'s rows hold about ``budget`` bytes
    in Arrow (``measured``: :func:`_measured` of rows like these; else measured here)."""
    if len(frame) <= min(rows, SAMPLE_ROWS):
        return rows
    size, sampled = _measured(frame) if measured is None else measured
    if not sampled:
        return rows
    return max(1, min(rows, budget * sampled // max(size, 1)))


_TEXT_TYPES = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_binary,
    pa.types.is_large_binary,
)


def dictionary_columns(table: pa.Table) -> list[str]:
    """The columns worth dictionary-encoding: flat ones, but not texts that are mostly
    distinct (responses, prompts), whose dictionary Parquet would build and then drop."""
    names = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_nested(column.type):
            continue
        kind = column.type
        if any(is_text(kind) for is_text in _TEXT_TYPES):
            present = len(column) - column.null_count
            if present and pc.count_distinct(column).as_py() > present // 2:
                continue
        names.append(name)
    return names


def parquet_schema(frame: pd.DataFrame, sample_rows: int) -> pa.Schema:
    """The Arrow schema of ``frame``, inferred from its first rows (inferring it from every
    row converts them all); a column still without a type there takes the type of its
    first value."""
    sample = _thinned_arrays(_with_copied_texts(frame.iloc[:sample_rows]))
    schema = pa.Schema.from_pandas(sample, preserve_index=True)
    for i, typed in enumerate(schema):
        if pa.types.is_null(typed.type) and typed.name in frame.columns:
            column = frame[typed.name]
            present = column.notna().to_numpy()
            if isinstance(column, pd.Series) and present.any():
                first = column.iloc[int(present.argmax())]
                schema = schema.set(i, typed.with_type(pa.array([first]).type))
    return schema


def _thinned_arrays(frame: pd.DataFrame, keep: int = 64) -> pd.DataFrame:
    """``frame`` with its columns of numpy arrays (embeddings) holding only their first
    ``keep`` values, None after them: a schema is inferred from those alone, with the same
    type and pandas metadata (inferring it from 2,000 arrays of 1,024 numbers converts
    them all, with the GIL held for 100-170 ms)."""
    thinned: pd.DataFrame | None = None
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        if column.dtype != object or len(column) <= keep:
            continue
        values = column.to_numpy()
        present = column.notna().to_numpy()
        if not present.any() or not isinstance(values[int(np.argmax(present))], np.ndarray):
            continue
        kept = np.full(len(values), None, dtype=object)
        kept[:keep] = values[:keep]
        if thinned is None:
            thinned = frame.copy(deep=False)
        same_index: Any = pd.Series(kept, index=column.index, dtype=object)
        thinned.isetitem(i, same_index)
    return frame if thinned is None else thinned


def _with_copied_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its columns of Python ``str`` holding copies of them, for pyarrow to
    look at (it leaves a UTF-8 copy inside each ``str`` it reads: :func:`prompts.str_array`)."""
    copied: pd.DataFrame = frame.copy(deep=False)
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        if holds_str_objects(column):
            values = [_copied(v) for v in column.to_numpy(dtype=object)]
            # (a Series of the column's dtype: pandas 3 turns a bare list of str into "str")
            same_dtype: Any = pd.Series(values, index=column.index, dtype=column.dtype)
            copied.isetitem(i, same_dtype)
    return copied


def _copied(value: Any) -> Any:
    if type(value) is not str:
        return value
    try:
        return value.encode().decode()
    except UnicodeEncodeError:  # a lone surrogate
        return value


def upload_parquet(
    s3: Any,
    frame: pd.DataFrame,
    bucket: str,
    key: str,
    put: dict[str, Any],
    *,
    batch_rows: int = PARQUET_BATCH_ROWS,
) -> None:
    """Write ``frame`` as Parquet to a temporary file and upload it (:func:`aws.upload`)."""
    with tempfile.TemporaryFile() as spool:
        write_parquet(frame, spool, batch_rows=batch_rows)
        spool.seek(0)
        upload(s3, spool, bucket, key, ContentType=PARQUET_CONTENT_TYPE, **put)


def _int_array(values: npt.NDArray[Any]) -> pa.Array:
    """Whole numbers with NaN as missing, as an Arrow int64 array (raises if one is not
    whole or does not fit)."""
    return pa.array(values, pa.float64(), mask=np.isnan(values)).cast(pa.int64())


def _as_int(values: npt.NDArray[Any]) -> Any:
    """Whole numbers with NaN as missing, for an ``Int64`` column."""
    missing = np.isnan(values)
    present = values[~missing]
    if len(present) and not (np.abs(present) < 2.0**63).all():
        return [None if np.isnan(v) else int(v) for v in values]
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)


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


# ---- reading whole blocks of lines with Arrow ----------------------------------------------

BLOCK_BYTES = 4 << 20
"""Bytes of output lines read and parsed at a time (Arrow parses a block on its threads,
without the GIL; a few blocks, not the file, are what is held in memory)."""

PARSE_AHEAD = 2
"""Blocks parsed at once, each on a thread of its own, while the caller records the one
before them: the part of a parse that does not run on Arrow's threads then overlaps
another (50,000 lines: 0.23 s instead of 0.28 s)."""

_Bytes = bytes | memoryview
_READ_OPTIONS = pj.ReadOptions(use_threads=True, block_size=1 << 20)
_OUR_ID = f"^{re.escape(RECORD_ID_PREFIX)}[0-9]{{10}}$"  # what position_of reads, in ASCII


def _blocks(lines: Iterable[bytes | str]) -> Iterator[tuple[_Bytes | None, list[Any] | None]]:
    """``lines`` in blocks of about ``BLOCK_BYTES``: ``(block, originals)`` where ``block``
    holds whole lines, each ending in a newline (None when the lines cannot be put in one
    block as they are), and ``originals`` the lines as given (None: split ``block``).  A
    binary file is read a block at a time, not a line at a time."""
    read = None if isinstance(lines, io.TextIOBase) else getattr(lines, "read", None)
    if callable(read):
        rest = b""  # the start of a line that the next read ends
        while True:
            data = read(BLOCK_BYTES)
            if not data:
                break
            start = 0
            if rest:  # the line cut by the last read: on its own, not copied into a block
                start = data.find(b"\n") + 1
                if start == 0:
                    rest += data
                    continue
                yield None, [rest + data[:start]]
            end = data.rfind(b"\n") + 1
            if end > start:
                yield memoryview(data)[start:end], None  # (no copy of the block)
            rest = data[max(start, end) :]
        if rest:
            yield None, [rest]
        return
    parts: list[bytes] = []
    originals: list[Any] = []
    size = 0
    whole = True
    for raw in lines:
        originals.append(raw)
        size += len(raw)
        if whole:
            try:
                line = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
            except UnicodeEncodeError:  # a lone surrogate: leave it to add_line
                whole = False
            else:
                parts.append(line)
                if not line.endswith(b"\n"):
                    parts.append(b"\n")
        if size >= BLOCK_BYTES:
            yield _joined(parts, len(originals)) if whole else None, originals
            parts, originals, size, whole = [], [], 0, True
    if originals:
        yield _joined(parts, len(originals)) if whole else None, originals


def _read_ahead(
    blocks: Iterator[tuple[_Bytes | None, list[Any] | None]], shape: _AnyShape
) -> Iterator[tuple[_Bytes | None, list[Any] | None, _Block | None]]:
    """``blocks`` with each one parsed by :func:`_read_block` (None: not parsed), in order,
    the next ``PARSE_AHEAD`` blocks read and parsed on worker threads while the caller
    records this one (Arrow and reading release the GIL)."""

    def parse(item: tuple[_Bytes | None, list[Any] | None]) -> _Block | None:
        return None if item[0] is None else _read_block(item[0], shape)

    with ThreadPoolExecutor(PARSE_AHEAD, thread_name_prefix="collect-parse") as pool:

        def ahead() -> tuple[tuple[_Bytes | None, list[Any] | None], Future[_Block | None]] | None:
            item = next(blocks, None)
            return None if item is None else (item, pool.submit(parse, item))

        pending = collections.deque(p for p in (ahead() for _ in range(PARSE_AHEAD)) if p)
        while pending:
            (block, originals), parsed = pending.popleft()
            following = ahead()
            if following is not None:
                pending.append(following)
            yield block, originals, parsed.result()


def _joined(parts: list[bytes], lines: int) -> bytes | None:
    block = b"".join(parts)
    return block if block.count(b"\n") == lines else None  # no line holds a newline


def _split_lines(block: _Bytes | None) -> list[bytes]:
    return [] if block is None else bytes(block).split(b"\n")


@dataclass(frozen=True)
class _Shape:
    """A response shape read with Arrow: the text is the concatenation of the ``text`` of
    the blocks of the list at ``content`` (only those of type ``"text"`` when ``typed``),
    the token counts are the integers under ``usage``.  A success whose list is missing,
    or a block whose type is null, is left to the adapter (its message names the keys)."""

    content: tuple[str, ...]
    typed: bool
    usage: tuple[str, str]

    @property
    def parse_options(self) -> pj.ParseOptions:
        block = [("text", pa.string())] + ([("type", pa.string())] if self.typed else [])
        node: pa.DataType = pa.list_(pa.struct(block))
        for key in reversed(self.content[1:]):
            node = pa.struct([(key, node)])
        usage = pa.struct([(key, pa.int64()) for key in self.usage])
        return _line_options(pa.struct([(self.content[0], node), ("usage", usage)]))

    def values(self, output: pa.StructArray, rows: npt.NDArray[Any]) -> pa.Array | None:
        """The response text of each of ``rows`` (all with an output), or None."""
        content: Any = _chosen(output, rows)
        for key in self.content:
            content = pc.struct_field(content, key)
        if content.null_count:
            return None
        flat = pc.list_flatten(content)
        text = pc.struct_field(flat, "text")
        keep = text.is_valid()
        if self.typed:
            kind = pc.struct_field(flat, "type")
            if pc.any(pc.and_(flat.is_valid(), kind.is_null())).as_py():
                return None  # absent (a text block) or null (not one): the adapter decides
            keep = pc.and_(keep, pc.fill_null(pc.equal(kind, "text"), False))
        if not _valid_utf8(text):
            return None
        n = len(content)
        if (
            len(flat) == n
            and pc.all(keep).as_py()
            and pc.all(pc.equal(content.value_lengths(), 1)).as_py()
        ):
            return text  # one text block each, the usual case
        parents = pc.list_parent_indices(content).to_numpy()
        kept = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(parents[kept], minlength=n), out=offsets[1:])
        joined: pa.Array = pc.binary_join(pa.ListArray.from_arrays(offsets, text.filter(keep)), "")
        return joined

    def tokens(self, output: pa.StructArray) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Input and output token counts of every row (NaN where absent)."""
        usage = pc.struct_field(output, "usage")
        return (
            _floats(pc.struct_field(usage, self.usage[0])),
            _floats(pc.struct_field(usage, self.usage[1])),
        )


@dataclass(frozen=True)
class _VectorShape:
    """An embedding response read with Arrow: the list of numbers under ``key``, the input
    token count under ``tokens``.  A success without that list (or with a null in it) is
    left to the adapter (it also looks elsewhere, and its message names the keys)."""

    key: str
    tokens_key: str

    @property
    def parse_options(self) -> pj.ParseOptions:
        output = pa.struct([(self.key, pa.list_(pa.float64())), (self.tokens_key, pa.int64())])
        return _line_options(output)

    def values(self, output: pa.StructArray, rows: npt.NDArray[Any]) -> pa.Array | None:
        """The embedding of each of ``rows`` (all with an output), or None."""
        vectors = pc.struct_field(_chosen(output, rows), self.key)
        if vectors.null_count or pc.list_flatten(vectors).null_count:
            return None
        return vectors

    def tokens(self, output: pa.StructArray) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Input token counts of every row (NaN where absent), and no output tokens."""
        counts = _floats(pc.struct_field(output, self.tokens_key))
        return counts, np.full(len(counts), np.nan)


_AnyShape = _Shape | _VectorShape


def _line_options(output: pa.DataType) -> pj.ParseOptions:
    """How Arrow reads an output line whose ``modelOutput`` has the type ``output``: the
    record id, that, and the error object; any other key is skipped."""
    error = pa.struct([("errorCode", pa.int64()), ("errorMessage", pa.string())])
    schema = pa.schema([("recordId", pa.string()), ("modelOutput", output), ("error", error)])
    return pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")


def _chosen(output: pa.StructArray, rows: npt.NDArray[Any]) -> Any:
    """The outputs of ``rows`` (a mask): all of them as they are, or a copy of those."""
    return output if rows.all() else output.take(pa.array(np.flatnonzero(rows)))


def _python_values(answers: pa.Array) -> list[Any]:
    """Answers as a row holds them in memory: a ``str`` each, or for embeddings a float64
    array each (views of one writable copy of the answers' numbers); None where null."""
    if not pa.types.is_list(answers.type):
        values: list[Any] = answers.to_pylist()
        return values
    flat = pc.list_flatten(answers).to_numpy(zero_copy_only=False)  # (nulls skipped)
    numbers = np.array(flat, dtype=np.float64)
    lengths = pc.fill_null(pc.list_value_length(answers), 0).to_numpy()
    bounds = [0, *np.cumsum(lengths).tolist()]
    valid = np.asarray(answers.is_valid().to_numpy(zero_copy_only=False), dtype=bool).tolist()
    return [
        numbers[a:b] if ok else None
        for ok, (a, b) in zip(valid, itertools.pairwise(bounds), strict=True)
    ]


_CLAUDE = _Shape(("content",), typed=True, usage=("input_tokens", "output_tokens"))
_MESSAGES = _Shape(
    ("output", "message", "content"), typed=False, usage=("inputTokens", "outputTokens")
)
_SHAPES: dict[Any, _AnyShape] = {
    AnthropicAdapter.parse_response: _CLAUDE,
    NovaAdapter.parse_response: _MESSAGES,
    ConverseAdapter.parse_response: _MESSAGES,
    TitanEmbedAdapter.parse_response: _VectorShape("embedding", "inputTextTokenCount"),
}
_PARSE_OPTIONS: dict[_AnyShape, pj.ParseOptions] = {}


def _fast_shape(adapter: ModelAdapter) -> _AnyShape | None:
    """The shape Arrow can read for ``adapter`` (None: every line goes to the adapter)."""
    return _SHAPES.get(type(adapter).parse_response)


def _floats(values: Any) -> npt.NDArray[Any]:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _valid_utf8(values: Any) -> bool:
    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


@dataclass
class _Block:
    positions: npt.NDArray[Any]
    """Input position of each line; -1 for a record id that is not ours."""
    has_output: npt.NDArray[Any]
    has_error: npt.NDArray[Any]
    output: pa.StructArray
    error: pa.StructArray


def _read_block(block: _Bytes, shape: _AnyShape) -> _Block | None:
    """Parse a block of lines with Arrow, or None when a line is not one JSON object
    with a string recordId on a line of its own (or Arrow cannot read it).  The lines
    are parsed without their echoed ``modelInput`` (:func:`_without_inputs`); should
    that not read, as they are."""
    data = bytes(block)
    stripped, lines = _without_inputs(data)
    if not lines:
        return None  # a blank line, or one that is not an object: line by line
    options = _PARSE_OPTIONS.get(shape)
    if options is None:
        options = _PARSE_OPTIONS[shape] = shape.parse_options
    for body in (stripped, data) if stripped is not data else (data,):
        try:
            table = pj.read_json(
                pa.BufferReader(body), read_options=_READ_OPTIONS, parse_options=options
            )
        except (pa.ArrowException, ValueError):
            continue
        if table.num_rows != lines:  # each line starts an object: one line held two
            continue
        table = table.combine_chunks()
        rid, output, error = (table.column(i).chunk(0) for i in range(3))
        if not rid.null_count and _valid_utf8(rid):
            return _block_of(rid, output, error)
    return None


_INPUT_KEY = b'"modelInput":'
_KEYS_AFTER_INPUT = (b'"modelOutput":', b'"error":')


def _without_inputs(data: bytes) -> tuple[bytes, int]:
    """``data``'s lines with the echoed request cut out, and how many lines there are (0
    when one does not start with ``{``: a blank line, or not an object).

    The cut runs from the ``"modelInput":`` key to the first ``"modelOutput":`` or
    ``"error":`` key after it (the order Bedrock writes them in, and the keys
    :meth:`Results.add_line` reads): the part of a line Arrow would otherwise tokenize
    only to drop, and most of it when prompts are long (four fifths in the benchmark's).
    A line without them in that order is kept whole; ``data`` itself when no line has
    them.  An unescaped ``"key":`` can only be a key (quotes inside JSON strings are
    escaped) and the echoed request bodies have no keys of these names; a cut that still
    went wrong would leave a line Arrow cannot read, and the block is then read whole."""
    find = data.find
    parts: list[bytes] = []
    kept = 0  # data[:kept] is in parts
    start = lines = 0
    size = len(data)
    while start < size:
        if data[start] != 0x7B:  # "{"
            return data, 0
        lines += 1
        end = find(b"\n", start) + 1 or size
        cut = find(_INPUT_KEY, start, end)
        if cut >= 0:
            for key in _KEYS_AFTER_INPUT:
                resume = find(key, cut, end)
                if resume >= 0:
                    parts.append(data[kept:cut])
                    kept = resume
                    break
        start = end
    if not parts:
        return data, lines
    parts.append(data[kept:])
    return b"".join(parts), lines


def _block_of(rid: pa.Array, output: pa.StructArray, error: pa.StructArray) -> _Block:
    lines = len(rid)
    ours = np.asarray(pc.match_substring_regex(rid, _OUR_ID).to_numpy(zero_copy_only=False))
    positions = np.full(lines, -1, dtype=np.int64)
    at = np.flatnonzero(ours)
    if len(at):
        digits = pc.utf8_slice_codeunits(rid.take(pa.array(at)), len(RECORD_ID_PREFIX))
        positions[at] = pc.cast(digits, pa.int64()).to_numpy()
    for i in np.flatnonzero(~ours).tolist():
        pos = position_of(rid[i].as_py())
        positions[i] = -1 if pos is None else pos
    return _Block(
        positions=positions,
        has_output=np.asarray(output.is_valid().to_numpy(zero_copy_only=False), dtype=bool),
        has_error=np.asarray(error.is_valid().to_numpy(zero_copy_only=False), dtype=bool),
        output=output,
        error=error,
    )


def _error_messages(error: pa.StructArray, rows: npt.NDArray[Any]) -> list[str] | None:
    """``error_message`` of each of ``rows`` (all with an error object), or None when one
    has no message (``error_message`` shows the whole object then)."""
    chosen = error.take(pa.array(np.flatnonzero(rows)))
    texts = pc.struct_field(chosen, "errorMessage")
    if not _valid_utf8(texts):
        return None
    messages: list[str] = []
    codes = pc.struct_field(chosen, "errorCode").to_pylist()
    for code, text in zip(codes, texts.to_pylist(), strict=True):
        if not text:
            return None
        messages.append(text if code is None else f"{code}: {text}")
    return messages


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
                stats.add(results.add_lines(body))  # read a block at a time
                stats.files.append(key)
    return stats
