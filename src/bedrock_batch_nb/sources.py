"""Where the rows come from: a DataFrame, a CSV/Parquet/JSONL file (local or ``s3://``),
or a Hugging Face dataset (``hf://<id>[:<split>]``, a ``datasets.Dataset`` or a streamed
``datasets.IterableDataset``).

Every source becomes a :class:`RowSource`: its columns, its number of rows, its row labels,
and its rows read a record batch at a time as small DataFrames (``batches``, ``read``,
``take``), so that a run never holds the whole dataset.  Parquet is read with pyarrow's
batch reader straight from the file; CSV and JSONL files over ``STREAM_MIN_BYTES`` are
converted once, a block at a time, to a local Parquet file; an ``s3://`` object is first
downloaded to a local file (a preview of a big file reads only its start:
:class:`DeferredSource`); a Hugging Face dataset is its own memory-mapped Arrow table
(one that selects rows of it is first written out in its order; a streamed one is read
once into a local Parquet file); a DataFrame is sliced in
place, its text columns handed on as Arrow.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .errors import BatchInputError
from .prompts import arrow_texts

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
BATCH_ROWS = 10_000
"""Rows per record batch when a source is read in full (and per batch the Parquet reader
decodes): a few MiB of text at a time."""
READ_AHEAD_BYTES = 16 * 2**20
"""A Parquet batch decoded ahead holds about this many bytes at most: ``BATCH_ROWS`` rows,
fewer when the rows are wide (10,000 rows of 10,000-character documents are 100 MB, and
the read-ahead holds four batches)."""
STREAM_MIN_BYTES = 64 * 2**20
"""CSV and JSONL files at least this big are converted to Parquet a block at a time."""
STREAM_BLOCK_BYTES = 2**20
"""Bytes per block read when a CSV or JSONL file is converted.  Arrow's streaming readers
read some 35-40 blocks ahead of their reader, whatever its pace and thread counts: this
bounds a conversion's memory (a 2 GiB CSV: 41 MiB held by Arrow, against 640 with 16 MiB
blocks).  A file with a row bigger than this is converted again in blocks of
``STREAM_SAMPLE_BYTES``."""
STREAM_SAMPLE_BYTES = 16 * 2**20
"""The column types of a converted file are those Arrow infers from its first this many
bytes."""
SELECTION_ROWS = 50_000
"""Rows gathered at a time when a dataset's selection of rows is written out (see
:func:`_write_selection`)."""
GIVE_BACK_BYTES = 64 * 2**20
"""Arrow's pool gives back what it has freed every this many bytes of a streamed dataset's
rows.  They are read on Arrow's threads, which free much of what they allocate on other
threads than their own, and the pool kept those pages, more the longer the stream: 2.2
million SimpleCoT rows streamed from one Parquet file without pre-buffering held 652-681
MiB at the end and 977-988 at the peak, against 287-295 and 678-811 with this, for
0.5-0.7 s more (every 16 MiB: about as little, for 1.1-1.6 s more); with pre-buffering,
1,732-1,749 MiB at the peak instead of 1,946-1,984 (the rest was the reader's cache of
the file's column chunks, before the pass read a row group at a time: :func:`_by_row_group`;
since, 531-555 MiB against 643-664 without this)."""
STREAM_GROUP_BYTES = 16 * 2**20
"""About this many bytes of Arrow data per row group of a converted file."""

BytesRead = Callable[[str, int, int], None]
"""Told what is being read (``"Downloading s3://..."``), how many of its bytes so far, and
how many in all."""


def describe_source(data: Any) -> str:
    """A short human name for ``data`` (for messages and progress)."""
    if isinstance(data, pd.DataFrame):
        return f"DataFrame ({len(data):,} rows)"
    if isinstance(data, str | os.PathLike):
        return str(data)
    kind = _hf_kind(data)
    if kind == "iterable":
        return "the streamed Hugging Face dataset"
    if kind == "dataset":
        return f"Hugging Face dataset ({len(data):,} rows)"
    return type(data).__name__


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key, with a clear error if malformed."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise BatchInputError(f"Malformed S3 URI {uri!r}: expected s3://<bucket>/<key>.")
    return parsed.netloc, parsed.path.lstrip("/")


class RowSource:
    """A dataset's rows, read a record batch at a time.

    ``columns`` are the data columns (not the index), ``num_rows`` the rows kept (after
    ``max_records_total``), ``index`` their labels: the DataFrame's own, or positions.
    Every read returns a DataFrame labelled with ``index``; ``columns=None`` reads all."""

    columns: list[str]
    num_rows: int
    _batch_rows: int = BATCH_ROWS

    @property
    def batch_rows(self) -> int:
        """Rows a run reads, builds and joins at a time: ``BATCH_ROWS``, fewer when that
        many rows would hold over ``READ_AHEAD_BYTES`` (a Parquet file's by its footer,
        an Arrow table's and a DataFrame's Arrow columns by their buffers)."""
        return self._batch_rows

    @contextlib.contextmanager
    def reading_by(self, rows: int) -> Iterator[None]:
        """Within the block, read (and decode ahead) at most ``rows`` rows at a time: a
        caller that takes fewer rows than :attr:`batch_rows` at a time (the results of
        a large embedding run, 2,048 rows) then holds no more rows read ahead than it
        takes."""
        kept = self._batch_rows
        self._batch_rows = max(1, min(rows, kept))
        try:
            yield
        finally:
            self._batch_rows = kept

    @property
    def index(self) -> pd.Index:
        index: pd.Index = pd.RangeIndex(self.num_rows)
        return index

    def batches(
        self, columns: Sequence[str] | None = None, batch_rows: int | None = None
    ) -> Iterator[pd.DataFrame]:
        """Every row, in order, ``batch_rows`` at a time (None: :attr:`batch_rows`)."""
        total = self.num_rows
        step = batch_rows or self.batch_rows
        for start in range(0, total, step):
            yield self.read(start, min(start + step, total), columns)

    def read(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows ``start`` to ``stop`` (positions)."""
        raise NotImplementedError

    def read_raw(
        self, start: int, stop: int, columns: Sequence[str] | None = None
    ) -> pd.DataFrame | pa.Table:
        """Rows ``start`` to ``stop`` as the source holds them: an Arrow table for files and
        datasets (no Python object per value), a DataFrame for a DataFrame."""
        return self.read(start, stop, columns)

    def labelled(self, rows: pd.DataFrame | pa.Table, start: int) -> pd.DataFrame:
        """Rows from :meth:`read_raw` that start at position ``start``, as :meth:`read`
        gives them (a DataFrame labelled with ``index``)."""
        if isinstance(rows, pd.DataFrame):
            return rows
        return _to_pandas(rows, self.index[start : start + rows.num_rows])

    def raw_batches(
        self, columns: Sequence[str] | None = None, batch_rows: int | None = None
    ) -> Iterator[tuple[int, pd.DataFrame | pa.Table]]:
        """Every row, in order, as ``(first position, rows)`` from :meth:`read_raw`,
        ``batch_rows`` at a time (None: :attr:`batch_rows`; fewer are also read ahead
        fewer at a time: :meth:`reading_by`)."""
        total = self.num_rows
        step = batch_rows or self.batch_rows
        with self.reading_by(step):
            for start in range(0, total, step):
                yield start, self.read_raw(start, min(start + step, total), columns)

    def take(self, positions: Sequence[int], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows at ``positions`` (in that order)."""
        raise NotImplementedError

    def head(self, n: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.read(0, min(n, self.num_rows), columns)

    @property
    def counted_rows(self) -> int | None:
        """``num_rows`` when it is known without opening the data whole (None: not yet)."""
        return self.num_rows

    @property
    def known_columns(self) -> list[str] | None:
        """``columns`` when they are known without opening the data whole (None: not yet)."""
        return self.columns

    def close(self) -> None:
        """Let go of what reading holds (read-ahead threads and their batches); a later
        read starts again."""

    def frame(self) -> pd.DataFrame:
        """Every row and column as one DataFrame (what a finished run joins its results to)."""
        return self.read(0, self.num_rows)

    @contextlib.contextmanager
    def parquet_file(self) -> Iterator[str]:
        """A local Parquet file of every row (with the index), for as long as the block runs."""
        with tempfile.TemporaryDirectory(prefix=_temp_prefix()) as folder:
            path = os.path.join(folder, "rows.parquet")
            self._write_parquet(path)
            yield path

    def _write_parquet(self, path: str) -> None:
        writer: pq.ParquetWriter | None = None
        try:
            for batch in self.batches():
                table = pa.Table.from_pandas(
                    batch, schema=writer.schema if writer else None, preserve_index=None
                )
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()


class FrameSource(RowSource):
    """A DataFrame the caller already holds: reads are views of it."""

    def __init__(self, frame: pd.DataFrame, limit: int | None = None) -> None:
        self._frame = frame if limit is None else frame.iloc[:limit]
        self.columns = [str(c) for c in self._frame.columns]
        self.num_rows = len(self._frame)
        # Rows of text pandas holds in Arrow (pandas 3's ``str``) are counted by their
        # bytes; Python ``str`` objects by their pointers only (summing every string's
        # size would take a pass over them all), so such a frame keeps BATCH_ROWS.
        held = int(self._frame.memory_usage(index=False, deep=False).sum())
        self._batch_rows = _batch_rows_within(self.num_rows, held)

    @property
    def index(self) -> pd.Index:
        return self._frame.index

    def _positions(self, columns: Sequence[str] | None) -> list[int] | slice:
        """Where ``columns`` are in the frame (every column for None), in the frame's order."""
        if columns is None:
            return slice(None)
        return [i for i, c in enumerate(self.columns) if c in columns]

    def read(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        # Rows and columns in one positional pick (a pick by names, then rows, took twice
        # as long: 0.6 against 0.3 ms a batch of 1,000 rows).
        rows: pd.DataFrame = self._frame.iloc[start:stop, self._positions(columns)]
        return rows

    def read_raw(
        self, start: int, stop: int, columns: Sequence[str] | None = None
    ) -> pd.DataFrame | pa.Table:
        """The rows as an Arrow table when pandas holds every column as Arrow text (pandas
        3's ``str``, ``string[pyarrow]``): the checks, the lengths and the rendering then
        use Arrow's kernels on them as they are.  The DataFrame otherwise: ``str`` objects
        (pandas before 3.0) are checked and counted by Python and encoded once, when a
        batch's records are built (:func:`prompts.str_array`); numbers, dates and mixed
        values are printed by Python."""
        rows = self.read(start, stop, columns)
        if rows.columns.has_duplicates or not all(
            isinstance(kind, pd.StringDtype | pd.ArrowDtype) for kind in rows.dtypes
        ):  # (looked at before any column is converted for nothing)
            return rows
        texts = []
        for i in range(rows.shape[1]):
            array = arrow_texts(rows.iloc[:, i])
            if array is None:
                return rows
            texts.append(array)
        return pa.Table.from_arrays(texts, names=[str(c) for c in rows.columns])

    def take(self, positions: Sequence[int], columns: Sequence[str] | None = None) -> pd.DataFrame:
        rows: pd.DataFrame = self._frame.iloc[list(positions), self._positions(columns)]
        return rows

    def frame(self) -> pd.DataFrame:
        return self._frame

    def _write_parquet(self, path: str) -> None:
        from .collecting import write_parquet

        write_parquet(self._frame, path)


def _to_pandas(table: pa.Table | pa.RecordBatch, labels: pd.Index) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas()
    frame.index = labels
    return frame


class TableSource(RowSource):
    """An Arrow table (a Hugging Face dataset's memory-mapped table, or a small file read
    whole): reads are zero-copy slices turned into DataFrames."""

    def __init__(self, table: pa.Table, limit: int | None = None, *, keep: Any = None) -> None:
        self._keep = keep  # what must live as long as the source (a temporary file)
        self._table = table if limit is None else table.slice(0, limit)
        self.columns = list(self._table.column_names)
        self.num_rows = self._table.num_rows
        self._batch_rows = _batch_rows_within(self.num_rows, int(self._table.nbytes))

    def _select(self, columns: Sequence[str] | None) -> pa.Table:
        if columns is None:
            return self._table
        return self._table.select([c for c in self.columns if c in columns])

    def read(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.labelled(self.read_raw(start, stop, columns), start)

    def read_raw(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pa.Table:
        return self._select(columns).slice(start, max(0, min(stop, self.num_rows) - start))

    def take(self, positions: Sequence[int], columns: Sequence[str] | None = None) -> pd.DataFrame:
        picked = np.asarray(positions, dtype=np.int64)
        return _to_pandas(self._select(columns).take(picked), pd.Index(picked))

    def _write_parquet(self, path: str) -> None:
        pq.write_table(self._table, path, row_group_size=BATCH_ROWS)


def _stored_index(schema: pa.Schema) -> list[str]:
    """The columns of a Parquet file that hold a DataFrame's own index, saved with it (a
    plain position index is saved as metadata only)."""
    meta = schema.pandas_metadata or {}
    return [c for c in meta.get("index_columns", []) if isinstance(c, str)]


def _open_parquet(path: str) -> pq.ParquetFile:
    # Without pre-buffering (with it, the reader keeps every column chunk it has read until
    # the file is closed, and memory grows with the file), through a 4 MiB read buffer
    # (without one, pages are read a small piece at a time, three times slower).
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=4 * 2**20)


class ParquetSource(RowSource):
    """A local Parquet file read with pyarrow's batch reader.

    Reads in increasing order (how jobs are staged) continue one open batch stream; a read
    behind it starts a new stream at the row group that holds its first row."""

    def __init__(self, path: str, limit: int | None = None, *, keep: Any = None) -> None:
        self.path = path
        self._keep = keep  # what must live as long as the source (a temporary file)
        self._file = _open_parquet(path)
        meta = self._file.metadata
        schema = self._file.schema_arrow
        stored = _stored_index(schema)
        self.columns = [c for c in schema.names if c not in stored]
        self.num_rows = meta.num_rows if limit is None else min(limit, meta.num_rows)
        self._group_starts = np.cumsum(
            [0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        )
        # (decoded: the footer's uncompressed sizes, every column counted)
        decoded = sum(int(meta.row_group(g).total_byte_size) for g in range(meta.num_row_groups))
        self._batch_rows = _batch_rows_within(int(meta.num_rows), decoded)
        self._index: pd.Index = pd.RangeIndex(self.num_rows)
        if stored:  # a DataFrame's own index, saved with it (e.g. a resumed run's rows)
            labels = pq.read_table(path, columns=stored).to_pandas().index
            self._index = labels[: self.num_rows]
        self._lock = threading.Lock()
        self._stream: Iterator[pa.RecordBatch] | None = None
        self._stream_key: tuple[tuple[str, ...], int] | None = None  # (columns, batch rows)
        self._pos = 0  # position of the first row of self._pending
        self._pending: pa.RecordBatch | None = None

    @property
    def index(self) -> pd.Index:
        return self._index

    def __del__(self) -> None:  # the read-ahead threads hold no reference to the source
        if hasattr(self, "_lock"):  # (not when the file could not be opened)
            self.close()

    def _names(self, columns: Sequence[str] | None) -> list[str]:
        return self.columns if columns is None else [c for c in self.columns if c in columns]

    def _schema(self, names: list[str]) -> pa.Schema:
        schema = self._file.schema_arrow
        return pa.schema([schema.field(n) for n in names])

    def close(self) -> None:
        with self._lock:
            if isinstance(self._stream, _ReadAhead):
                self._stream.close()
            self._stream, self._pending = None, None

    def _open(self, start: int, names: list[str]) -> None:
        group = int(np.searchsorted(self._group_starts, start, side="right")) - 1
        groups = list(range(group, self._file.metadata.num_row_groups))
        if isinstance(self._stream, _ReadAhead):
            self._stream.close()
        self._stream = _ReadAhead(
            functools.partial(_open_parquet, self.path), groups, names, self._batch_rows
        )
        self._stream_key = (tuple(names), self._batch_rows)
        self._pos = int(self._group_starts[group])
        self._pending = None

    def _next(self) -> pa.RecordBatch | None:
        if self._pending is None:
            assert self._stream is not None
            self._pending = next(self._stream, None)
        return self._pending

    def _arrow(self, start: int, stop: int, names: list[str]) -> pa.Table:
        """Rows ``start`` to ``stop`` of ``names`` as an Arrow table, from the open stream."""
        with self._lock:
            key = (tuple(names), self._batch_rows)
            if self._stream is None or self._stream_key != key or start < self._pos:
                self._open(start, names)
            parts: list[pa.RecordBatch] = []
            while self._pos < stop:
                batch = self._next()
                if batch is None:
                    break
                end = self._pos + batch.num_rows
                if end <= start:  # wholly before the read: skip it
                    self._pos, self._pending = end, None
                    continue
                lo, hi = max(start - self._pos, 0), min(stop, end) - self._pos
                parts.append(batch.slice(lo, hi - lo))
                if end <= stop:
                    self._pos, self._pending = end, None
                else:  # the rest of this batch belongs to the next read
                    break
            return pa.Table.from_batches(parts, schema=self._schema(names))

    def read(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.labelled(self.read_raw(start, stop, columns), start)

    def read_raw(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pa.Table:
        return self._arrow(start, min(stop, self.num_rows), self._names(columns))

    def take(self, positions: Sequence[int], columns: Sequence[str] | None = None) -> pd.DataFrame:
        picked = np.asarray(positions, dtype=np.int64)
        names = self._names(columns)
        parts: list[pa.Table] = []
        order = np.argsort(picked, kind="stable")
        ordered = picked[order]
        start = 0  # read in file order, a batch's span at a time
        while start < len(ordered):
            first = int(ordered[start])
            stop_at = int(np.searchsorted(ordered, first + BATCH_ROWS, side="left"))
            chunk = ordered[start:stop_at]
            table = self._arrow(first, int(chunk[-1]) + 1, names)
            parts.append(table.take(chunk - first))
            start = stop_at
        whole = pa.concat_tables(parts) if parts else self._schema(names).empty_table()
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        result = whole.take(back)
        return _to_pandas(result, self._index[picked])

    @contextlib.contextmanager
    def parquet_file(self) -> Iterator[str]:
        if self.num_rows == self._file.metadata.num_rows:  # the file itself, as it is
            yield self.path
        else:
            with super().parquet_file() as path:
                yield path


def _batch_rows_within(rows: int, size: int) -> int:
    """``BATCH_ROWS``, or fewer so that that many of ``rows`` rows holding ``size`` bytes
    in all hold about ``READ_AHEAD_BYTES``."""
    if rows <= 0 or size <= 0:
        return BATCH_ROWS
    return max(1, min(BATCH_ROWS, READ_AHEAD_BYTES * rows // size))


_END = object()
"""Put by a read-ahead worker after the last batch of a row group."""


class _ReadAhead(Iterator[pa.RecordBatch]):
    """A Parquet file's batches, in order, decoded ahead of the reader by ``workers``
    threads, each with its own reader, taking the row groups in turn: decoding runs
    without the GIL, so it overlaps with what is done to the batch before (checking,
    rendering and building records) and with the other worker's decoding.  Each worker
    holds at most ``depth`` batches.  The columns of a batch are decoded at once on
    Arrow's threads: the worker that reads the current row group is the one the reader
    waits for (the other is ``depth`` batches ahead at most), and with the columns in
    parallel a scan that does little with its rows (validation's) waits half as long."""

    def __init__(
        self,
        open_file: Callable[[], pq.ParquetFile],
        groups: list[int],
        names: list[str],
        batch_rows: int,
        *,
        workers: int = 2,
        depth: int = 2,
    ) -> None:
        self._groups = len(groups)
        self._workers = max(1, min(workers, len(groups)))
        self._queues: list[queue.Queue[Any]] = [queue.Queue(depth) for _ in range(self._workers)]
        self._closed = threading.Event()
        self._group = 0  # the row group being read (index into ``groups``)
        for w in range(self._workers):
            threading.Thread(
                target=self._fill,
                args=(w, open_file, groups[w :: self._workers], names, batch_rows),
                name=f"parquet-read-ahead-{w}",
                daemon=True,
            ).start()

    def _put(self, worker: int, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queues[worker].put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(
        self,
        worker: int,
        open_file: Callable[[], pq.ParquetFile],
        groups: list[int],
        names: list[str],
        batch_rows: int,
    ) -> None:
        try:
            reader = open_file()
            for group in groups:
                for batch in reader.iter_batches(
                    batch_size=batch_rows,
                    row_groups=[group],
                    columns=names,
                    use_threads=len(names) > 1,
                ):
                    if not self._put(worker, batch):
                        return
                if not self._put(worker, _END):
                    return
        except BaseException as exc:  # raised in the reader's thread instead
            self._put(worker, exc)

    def __next__(self) -> pa.RecordBatch:
        while self._group < self._groups:
            item = self._queues[self._group % self._workers].get()
            if item is _END:
                self._group += 1
                continue
            if isinstance(item, BaseException):
                self._group = self._groups
                raise item
            batch: pa.RecordBatch = item
            return batch
        raise StopIteration

    def close(self) -> None:
        self._closed.set()


def open_source(
    data: Any,
    *,
    max_records_total: int | None = None,
    hf_split: str | None = None,
    s3_client: Any = None,
    on_rows_read: Callable[[int], None] | None = None,
    on_bytes_read: BytesRead | None = None,
) -> RowSource:
    """A :class:`RowSource` over ``data``, keeping at most ``max_records_total`` rows.
    ``on_rows_read``: told how many rows a streamed dataset's pass has read so far, as it
    goes (the one source read whole whose rows can be counted before the end);
    ``on_bytes_read``: told how far a download of an ``s3://`` object or the conversion
    of a big CSV or JSONL file to Parquet has got, in bytes of the file."""
    limit = max_records_total
    if isinstance(data, RowSource):
        return data
    if isinstance(data, pd.DataFrame):
        return FrameSource(data, limit)
    hf = _hf_kind(data)
    if hf == "dataset":
        return _from_hf_dataset(data, limit)
    if hf == "iterable":
        return _from_hf_iterable(data, limit, on_rows_read)
    if hf == "splits":
        splits = list(data)
        example = f"data[{splits[0]!r}]" if splits else "data['train']"
        raise BatchInputError(
            f"This Hugging Face {type(data).__name__} holds the splits "
            f"{', '.join(map(repr, splits)) or '(none)'}: pass one of them, e.g. {example}."
        )
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    if not isinstance(data, str):
        raise BatchInputError(
            f"Cannot read rows from a {type(data).__name__}: pass a pandas DataFrame, a path or "
            "s3:// URI of a CSV/Parquet/JSONL file, an hf://<dataset>[:<split>] id, or a "
            "datasets.Dataset (or IterableDataset)."
        )
    if data.startswith("hf://"):
        return _from_hf_id(data[len("hf://") :], hf_split, limit)
    if data.startswith("s3://"):
        uri = data
        bucket, key = parse_s3_uri(uri)
        fmt = _format_of(uri)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        size = _s3_size(s3_client, uri)

        def download() -> RowSource:
            local = _download(uri, s3_client, size, on_bytes_read)
            return _from_file(local.name, fmt, uri, limit, keep=local, on_bytes_read=on_bytes_read)

        if _compressed(uri) or size < STREAM_MIN_BYTES:
            return download()
        if fmt == "parquet":
            head = _parquet_head(
                lambda: io.BufferedReader(_S3Range(s3_client, bucket, key, size), 2**20)
            )
            return DeferredSource(head, download, limit)

        def first_bytes() -> tuple[bytes, bool]:
            end = min(size, STREAM_SAMPLE_BYTES) - 1
            body = s3_client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{end}")["Body"]
            return body.read(), size > end + 1

        return DeferredSource(_text_file_head(first_bytes, fmt), download, limit)
    fmt = _format_of(data)
    path = Path(data).expanduser()
    if not path.is_file():
        raise BatchInputError(f"No such file: {data}")
    name = data
    local_path = str(path)
    if fmt == "parquet" or path.stat().st_size < STREAM_MIN_BYTES:
        return _from_file(local_path, fmt, name, limit)
    return DeferredSource(
        _text_file_head(functools.partial(_file_start, local_path), fmt),
        lambda: _from_file(local_path, fmt, name, limit, on_bytes_read=on_bytes_read),
        limit,
    )


def load_rows(
    data: Any,
    *,
    max_records_total: int | None = None,
    hf_split: str | None = None,
    s3_client: Any = None,
) -> pd.DataFrame:
    """Load ``data`` whole as a DataFrame, keeping at most ``max_records_total`` rows."""
    source = open_source(
        data, max_records_total=max_records_total, hf_split=hf_split, s3_client=s3_client
    )
    return source.frame()


class _TempFile:
    """A temporary file deleted when the source that holds it is collected."""

    def __init__(self, suffix: str) -> None:
        fd, self.name = tempfile.mkstemp(prefix=_temp_prefix(), suffix=suffix)
        os.close(fd)
        self._finalizer = weakref.finalize(self, _unlink, self.name)


class _TempDir:
    """A temporary folder deleted (with what it holds) when the source that holds it is
    collected."""

    def __init__(self) -> None:
        self.name = tempfile.mkdtemp(prefix=_temp_prefix())
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.name, ignore_errors=True)


_TEMP_NAME = re.compile(r"bedrock-batch-(\d+)-")
_swept: set[str] = set()  # temporary folders already swept by this process


def _temp_prefix() -> str:
    """``bedrock-batch-<pid>-``: temporary copies of rows are named after their process,
    and the first one a process makes deletes those of processes that are gone (a kernel
    killed, by the out-of-memory killer or a forced restart, never deletes its own: a
    2 GB CSV's conversion would stay on disk)."""
    folder = tempfile.gettempdir()
    if folder not in _swept:
        _swept.add(folder)
        with contextlib.suppress(OSError):
            _sweep_orphans(folder)
    return f"bedrock-batch-{os.getpid()}-"


def _sweep_orphans(folder: str) -> None:
    if os.name != "posix":  # (os.kill(pid, 0) checks a process only there)
        return
    for entry in os.scandir(folder):
        named = _TEMP_NAME.match(entry.name)
        if named is None or _alive(int(named[1])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            _unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process (PermissionError), or unsure
        return True
    return True


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _download(
    uri: str, s3_client: Any, size: int, on_bytes_read: BytesRead | None = None
) -> _TempFile:
    bucket, key = parse_s3_uri(uri)
    local = _TempFile(suffix=os.path.splitext(key)[1] or ".data")
    callback = None
    if on_bytes_read is not None:
        done = 0
        lock = threading.Lock()  # (the transfer's threads each report their parts)

        def callback(amount: int) -> None:
            nonlocal done
            with lock:
                done += amount
                on_bytes_read(f"Downloading {uri}", done, size)

    try:  # a managed download: multipart, straight to disk
        s3_client.download_file(bucket, key, local.name, Callback=callback)
    except Exception as exc:  # botocore ClientError: 404, 403, ...
        raise BatchInputError(f"Cannot read {uri}: {_short(exc)}") from exc
    return local


def _s3_size(s3_client: Any, uri: str) -> int:
    """The object's size (a HEAD request: a missing object or a refused read is said at
    once, before anything is downloaded)."""
    bucket, key = parse_s3_uri(uri)
    try:
        return int(s3_client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except Exception as exc:  # botocore ClientError: 404, 403, ...
        raise BatchInputError(f"Cannot read {uri}: {_short(exc)}") from exc


_COMPRESSED = (".gz", ".bz2", ".zst")
"""Suffixes of compressed files (Arrow's readers decompress them by their name)."""


def _compressed(name: str) -> bool:
    return name.lower().endswith(_COMPRESSED)


def _format_of(name: str) -> str:
    lowered = name.lower()
    for suffix in _COMPRESSED:
        lowered = lowered.removesuffix(suffix)
    ext = os.path.splitext(lowered)[1]
    if ext not in FORMATS:
        raise BatchInputError(
            f"Cannot tell the format of {name!r}: use a .csv, .tsv, .parquet or .jsonl file."
        )
    return FORMATS[ext]


def _csv_options(fmt: str, column_types: dict[str, pa.DataType] | None = None) -> dict[str, Any]:
    return {
        # A quoted cell may hold newlines (a prompt, a document), as pandas and spreadsheets
        # write them; without this Arrow cuts its blocks at any newline.
        "parse_options": pa_csv.ParseOptions(
            delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True
        ),
        # Keep text as text: no "NA"/"null" strings turned into nulls except empty cells.
        "convert_options": pa_csv.ConvertOptions(
            strings_can_be_null=True, null_values=[""], column_types=column_types
        ),
    }


def _from_file(
    path: str,
    fmt: str,
    name: str,
    limit: int | None,
    keep: Any = None,
    on_bytes_read: BytesRead | None = None,
) -> RowSource:
    try:
        if fmt == "parquet":
            return ParquetSource(path, limit, keep=keep)
        if os.path.getsize(path) < STREAM_MIN_BYTES:
            if fmt in ("csv", "tsv"):
                table = pa_csv.read_csv(path, **_csv_options(fmt))
            else:
                table = pa_json.read_json(path)
            return TableSource(table, limit)
        converted = _TempFile(suffix=".parquet")
        converting = None
        if on_bytes_read is not None:
            converting = functools.partial(on_bytes_read, f"Converting {name} to Parquet")
        _convert_to_parquet(path, fmt, converted.name, converting)
        return ParquetSource(converted.name, limit, keep=converted)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchInputError(f"Cannot read {name} as {fmt}: {_short(exc)}") from exc


def _convert_to_parquet(
    path: str, fmt: str, target: str, on_bytes_read: Callable[[int, int], None] | None = None
) -> None:
    """Write a big CSV/JSONL file as Parquet a block at a time (bounded memory).

    Column types come from the file's first ``STREAM_SAMPLE_BYTES``.  When a later block
    does not fit them, CSV columns are read again as text (a column of numbers with text
    further down), and a JSONL file (a key first met further down) is read whole by Arrow,
    which reconciles its blocks: its memory is then the file's.  A row bigger than a block
    is read again in blocks of ``STREAM_SAMPLE_BYTES``.  ``on_bytes_read``: told after each
    block how many of the file's bytes have been read, and the file's size."""
    block_size = STREAM_BLOCK_BYTES
    while True:
        try:
            try:
                _stream_to_parquet(path, fmt, target, block_size, False, on_bytes_read)
            except pa.ArrowInvalid as exc:
                if _row_too_big(exc):
                    raise
                if fmt == "jsonl":
                    whole = pa_json.ReadOptions(block_size=STREAM_SAMPLE_BYTES)
                    table = pa_json.read_json(path, read_options=whole)
                    pq.write_table(table, target, row_group_size=BATCH_ROWS, compression="none")
                else:
                    _stream_to_parquet(path, fmt, target, block_size, True, on_bytes_read)
            return
        except pa.ArrowInvalid as exc:
            if not _row_too_big(exc) or block_size >= STREAM_SAMPLE_BYTES:
                raise
            block_size = STREAM_SAMPLE_BYTES


def _row_too_big(exc: pa.ArrowInvalid) -> bool:
    return "straddl" in str(exc)  # "straddling object straddles two block boundaries"


def _stream_to_parquet(
    path: str,
    fmt: str,
    target: str,
    block_size: int,
    as_text: bool,
    on_bytes_read: Callable[[int, int], None] | None,
) -> None:
    schema = _sample_schema(path, fmt)
    read_options = {"block_size": block_size}
    with pa.OSFile(path) as file:
        stream = (
            pa.CompressedInputStream(file, pa.Codec.detect(path).name)
            if _compressed(path)
            else file
        )
        reader = _open_reader(stream, fmt, schema, read_options, as_text)
        batches: Iterable[pa.RecordBatch] = reader
        if on_bytes_read is not None:
            batches = _reporting(reader, file, os.path.getsize(path), on_bytes_read)
        # Uncompressed: the file is read once, soon, and lives as long as the run's source;
        # compressing it took half the conversion's time (a 2 GiB CSV: 9 s with snappy, 4 s
        # without, for 1.2 GiB instead of 2 on disk).
        _write_tables((pa.Table.from_batches([b]) for b in batches), reader.schema, target)


def _reporting(
    batches: Iterable[pa.RecordBatch],
    file: pa.NativeFile,
    size: int,
    on_bytes_read: Callable[[int, int], None],
) -> Iterator[pa.RecordBatch]:
    """``batches``, telling ``on_bytes_read`` after each how far into ``file`` its reader
    is (a few blocks ahead of the batches given: it reads ahead)."""
    for batch in batches:
        yield batch
        on_bytes_read(file.tell(), size)


def _open_reader(
    stream: pa.NativeFile, fmt: str, schema: pa.Schema, read_options: dict[str, Any], as_text: bool
) -> Any:
    if fmt == "jsonl":
        return pa_json.open_json(
            stream,
            read_options=pa_json.ReadOptions(**read_options),
            parse_options=pa_json.ParseOptions(explicit_schema=schema),
        )
    types = {f.name: pa.string() if as_text else f.type for f in schema}
    options = _csv_options(fmt, column_types=types)
    return pa_csv.open_csv(stream, read_options=pa_csv.ReadOptions(**read_options), **options)


def _write_tables(tables: Iterable[pa.Table], schema: pa.Schema, target: str) -> None:
    """Write ``tables`` (of ``schema``, or cast to it) as one Parquet file, about
    ``STREAM_GROUP_BYTES`` per row group."""
    with pq.ParquetWriter(target, schema, compression="none") as writer:
        group: list[pa.Table] = []
        size = 0
        for table in tables:
            if table.schema != schema:
                try:
                    table = table.cast(schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                    raise BatchInputError(
                        f"Rows further on do not have the first rows' columns: {_short(exc)}"
                    ) from exc
            group.append(table)
            size += table.nbytes
            if size >= STREAM_GROUP_BYTES:
                writer.write_table(pa.concat_tables(group))
                group, size = [], 0
        if group:
            writer.write_table(pa.concat_tables(group))


def _sample_schema(path: str, fmt: str) -> pa.Schema:
    """The columns Arrow infers from the first ``STREAM_SAMPLE_BYTES`` of the file (after
    decompression), read as one block: a reader opened on the file itself reads dozens of
    blocks ahead."""
    sample, more = _file_start(path)
    return _parse_start(sample, fmt, more=more).schema


def _file_start(path: str) -> tuple[bytes, bool]:
    """The first ``STREAM_SAMPLE_BYTES`` of a local file (after decompression), and
    whether more follow."""
    with pa.input_stream(path, compression="detect") as stream:
        return stream.read(STREAM_SAMPLE_BYTES), bool(stream.read(1))


def _parse_start(sample: bytes, fmt: str, *, more: bool) -> pa.RecordBatch:
    """The rows Arrow reads from ``sample``, the start of a CSV or JSONL file (``more``:
    the file goes on after it), as one block."""
    # A block that is not the last ends at its last whole row (the rest is the next one's).
    options = {"block_size": max(len(sample) - more, 1)}
    source = pa.BufferReader(sample)
    reader: Any
    if fmt == "jsonl":
        reader = pa_json.open_json(source, read_options=pa_json.ReadOptions(**options))
    else:
        reader = pa_csv.open_csv(
            source, read_options=pa_csv.ReadOptions(**options), **_csv_options(fmt)
        )
    batch = reader.read_next_batch()
    assert isinstance(batch, pa.RecordBatch)
    return batch


class DeferredSource(RowSource):
    """A big CSV or JSONL file, or a big ``s3://`` object, opened only when more than a
    preview is read: :meth:`head` gives the first rows from the file's start
    (``first_rows``: the first ``STREAM_SAMPLE_BYTES`` of a CSV or JSONL file, a Parquet
    object's footer and first row group, by ranged reads on S3); anything else opens the
    whole (downloads it, converts it) once and reads from it.  A preview of a 2 GB file no
    longer waits for all of it.  ``columns``, when the source declares them (a streamed
    dataset's features), are its known columns before it is opened."""

    def __init__(
        self,
        first_rows: Callable[[int], pd.DataFrame | None],
        open_whole: Callable[[], RowSource],
        limit: int | None = None,
        columns: list[str] | None = None,
    ) -> None:
        self._first_rows = first_rows  # None: it cannot tell, ask the whole file
        self._open_whole = open_whole
        self._limit = limit  # (max_records_total)
        self._declared_columns = columns
        self._whole_source: RowSource | None = None
        self._lock = threading.Lock()

    @property
    def batch_rows(self) -> int:  # (the rows, once read whole)
        whole = self._whole_source
        return BATCH_ROWS if whole is None else whole.batch_rows

    def _whole(self) -> RowSource:
        with self._lock:
            if self._whole_source is None:
                self._whole_source = self._open_whole()
            return self._whole_source

    @property
    def columns(self) -> list[str]:  # type: ignore[override]  # (read-only here)
        return self._whole().columns

    @property
    def num_rows(self) -> int:  # type: ignore[override]
        return self._whole().num_rows

    @property
    def counted_rows(self) -> int | None:
        whole = self._whole_source
        return None if whole is None else whole.num_rows

    @property
    def known_columns(self) -> list[str] | None:
        whole = self._whole_source
        return self._declared_columns if whole is None else whole.columns

    @property
    def index(self) -> pd.Index:
        return self._whole().index

    def head(self, n: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        if self._limit is not None:
            n = min(n, self._limit)
        if self._whole_source is None:
            rows = self._first_rows(n)
            if rows is not None:
                if columns is not None:
                    rows = rows[[c for c in rows.columns if c in columns]]
                return rows
        return self._whole().head(n, columns)

    def read(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self._whole().read(start, stop, columns)

    def read_raw(
        self, start: int, stop: int, columns: Sequence[str] | None = None
    ) -> pd.DataFrame | pa.Table:
        return self._whole().read_raw(start, stop, columns)

    def take(self, positions: Sequence[int], columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self._whole().take(positions, columns)

    def close(self) -> None:
        if self._whole_source is not None:
            self._whole_source.close()

    def frame(self) -> pd.DataFrame:
        return self._whole().frame()

    @contextlib.contextmanager
    def parquet_file(self) -> Iterator[str]:
        with self._whole().parquet_file() as path:
            yield path


def _text_file_head(
    first_bytes: Callable[[], tuple[bytes, bool]], fmt: str
) -> Callable[[int], pd.DataFrame | None]:
    """``first_rows`` for a CSV or JSONL file: its first bytes (and whether more follow),
    parsed once as one block (:func:`_parse_start`)."""
    parsed: list[tuple[pa.RecordBatch | None, bool]] = []

    def first_rows(n: int) -> pd.DataFrame | None:
        if not parsed:
            try:
                sample, more = first_bytes()
                parsed.append((_parse_start(sample, fmt, more=more), more))
            except (pa.ArrowException, OSError, ValueError):
                parsed.append((None, True))  # the whole file's reading says what is wrong
        rows, more = parsed[0]
        if rows is None or (rows.num_rows < n and more):
            return None
        table = pa.Table.from_batches([rows]).slice(0, n)
        return _to_pandas(table, pd.RangeIndex(table.num_rows))

    return first_rows


def _parquet_head(open_file: Callable[[], Any]) -> Callable[[int], pd.DataFrame | None]:
    """``first_rows`` for a Parquet file opened by ``open_file``: its first rows, labelled
    as :class:`ParquetSource` labels them (a DataFrame's own index, saved with it)."""

    def first_rows(n: int) -> pd.DataFrame | None:
        try:
            with open_file() as raw:
                parquet = pq.ParquetFile(raw, pre_buffer=False, buffer_size=2**20)
                schema = parquet.schema_arrow
                batch = next(parquet.iter_batches(batch_size=max(n, 1)), None)
        except (pa.ArrowException, OSError, ValueError):
            return None  # the whole file's reading says what is wrong
        table = schema.empty_table() if batch is None else pa.Table.from_batches([batch], schema)
        table = table.slice(0, n)
        stored = _stored_index(schema)
        labels = table.select(stored).to_pandas().index if stored else pd.RangeIndex(len(table))
        return _to_pandas(table.select([c for c in table.column_names if c not in stored]), labels)

    return first_rows


class _S3Range(io.RawIOBase):
    """An S3 object read by ranged GETs, a file for pyarrow: a Parquet preview reads its
    footer and first row group, not the whole object."""

    def __init__(self, s3_client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._s3, self._bucket, self._key, self._size = s3_client, bucket, key, size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        span = f"bytes={self._pos}-{self._pos + want - 1}"
        body = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=span)["Body"]
        data = body.read()
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _hf_kind(data: Any) -> str | None:
    """``"dataset"``, ``"iterable"`` (``streaming=True``) or ``"splits"`` (a ``DatasetDict``) for a
    Hugging Face ``datasets`` object, None for anything else.  ``datasets`` is not imported
    for this: whoever holds one of its objects has imported it."""
    datasets = sys.modules.get("datasets")
    if datasets is None:
        return None
    if isinstance(data, datasets.Dataset):
        return "dataset"
    if isinstance(data, datasets.IterableDataset):
        return "iterable"
    if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return "splits"
    return None


def _from_hf_dataset(data: Any, limit: int | None) -> RowSource:
    """The dataset's memory-mapped Arrow table, read in place; a dataset that is a
    selection of its table's rows: a :class:`SelectionSource`."""
    if limit is not None and limit < len(data):
        data = data.select(range(limit))
    if getattr(data, "_indices", None) is not None:
        return SelectionSource(data)
    table = data.with_format("arrow")[:]  # the memory-mapped table (a view, not a copy)
    assert isinstance(table, pa.Table)
    return TableSource(table)


def _from_hf_iterable(
    data: Any, limit: int | None, on_rows_read: Callable[[int], None] | None = None
) -> RowSource:
    """A streamed Hugging Face dataset (``load_dataset(..., streaming=True)``): a preview
    reads its first rows only, and its declared features are its known columns (checked
    before anything is streamed); anything more streams it once, ``BATCH_ROWS`` rows at a
    time, into a temporary Parquet file that every later read comes from (a run reads its
    rows more than once: to validate, to build, to retry, to join the answers)."""

    def first_rows(n: int) -> pd.DataFrame | None:  # (n: at most the limit)
        table = _first_table(data, n)
        if table is None:
            return None  # no rows: the whole pass says so
        return _to_pandas(table, pd.RangeIndex(table.num_rows))

    def open_whole() -> RowSource:
        target = _TempFile(suffix=".parquet")
        _write_streamed(data, target.name, limit, on_rows_read)
        return ParquetSource(target.name, None, keep=target)

    columns = data.column_names  # (None when its features are not declared)
    return DeferredSource(first_rows, open_whole, limit, None if columns is None else [*columns])


def _write_streamed(
    data: Any,
    target: str,
    limit: int | None = None,
    on_rows_read: Callable[[int], None] | None = None,
) -> None:
    """A streamed dataset's rows (its first ``limit``), in one pass, as the Parquet file
    ``target``; ``on_rows_read`` told the rows read so far after each batch."""
    # (a sample of its first rows, under a limit: read from the files they are in)
    tables = _hf_tables(_by_row_group(data), BATCH_ROWS) if limit is None else _first_tables(data)
    try:
        kept = _giving_back(tables if limit is None else _first_of(tables, limit))
        if on_rows_read is not None:
            kept = _counted(kept, on_rows_read)
        first = next(kept, None)
        if first is None:
            raise BatchInputError("The streamed Hugging Face dataset has no rows.")
        _write_tables(itertools.chain([first], kept), first.schema, target)
    finally:
        tables.close()  # (a limit reached: the stream is read no further)


def _counted(tables: Iterator[pa.Table], told: Callable[[int], None]) -> Iterator[pa.Table]:
    rows = 0
    for table in tables:
        rows += table.num_rows
        told(rows)
        yield table


def _first_table(data: Any, rows: int) -> pa.Table | None:
    """The first ``rows`` rows of a streamed dataset (fewer if it has fewer; None: none),
    read no further than they go (:func:`_first_tables`)."""
    tables = _first_tables(data, max(rows, 1))
    try:
        first = list(_first_of(tables, rows))
    finally:
        tables.close()
    return pa.concat_tables(first) if first else None


def _first_of(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The first ``rows`` rows of ``tables``, which are read no further than that."""
    if rows <= 0:
        return
    for table in tables:
        yield table.slice(0, rows)
        rows -= table.num_rows
        if rows <= 0:
            return


_SAME_TABLES = frozenset(
    {
        "ArrowExamplesIterable",
        "ExamplesIterable",
        "RebatchedArrowExamplesIterable",
        "SelectColumnsIterable",
        "MappedExamplesIterable",
        "FilteredExamplesIterable",
        "SkipExamplesIterable",
        "TakeExamplesIterable",
        "FormattedExamplesIterable",
        "TypedExamplesIterable",
        "VerticallyConcatenatedMultiSourcesExamplesIterable",
        "HorizontallyConcatenatedMultiSourcesExamplesIterable",
    }
)
"""The steps of a streamed dataset (``datasets``' examples iterables) that pass on the
tables they are given in the same order however many shards their source has."""
_BY_FILE_SAME = _SAME_TABLES - {
    "SkipExamplesIterable",
    "TakeExamplesIterable",
    "VerticallyConcatenatedMultiSourcesExamplesIterable",
    "HorizontallyConcatenatedMultiSourcesExamplesIterable",
    "MappedExamplesIterable",
    "FilteredExamplesIterable",
}
"""Those that give the same rows in the same order when their source is read a shard (a
file) after another: not ``skip`` and ``take``, which split their count between the
shards they are cut into, nor a concatenation, whose shards each hold a part of every
dataset it joins, nor a ``map`` or ``filter``, which, batched, may see other batches."""


def _splittable(data: Any, steps_known: frozenset[str]) -> bool:
    """Whether every step of the streamed dataset ``data`` is one of ``steps_known``, and
    its order is not set by an epoch or a split between nodes."""
    if getattr(data, "_distributed", None) or getattr(data, "epoch", 0):
        return False
    steps: list[Any] = [getattr(data, "_ex_iterable", None)]
    while steps:
        step = steps.pop()
        if type(step).__name__ not in steps_known:
            return False
        steps.extend(getattr(step, "ex_iterables", ()))
        if hasattr(step, "ex_iterable"):
            steps.append(step.ex_iterable)
    return True


def _by_row_group(data: Any) -> Any:
    """A streamed dataset read a Parquet row group at a time (``IterableDataset.reshard``,
    in ``datasets`` releases of 2026 on), when that gives the same rows in the same order:
    no step that shuffles, interleaves or splits by shard (``shuffle``, ``set_epoch``,
    ``split_dataset_by_node``).  A shard per file is one scan of the file, and Arrow's
    pre-buffering (on unless the dataset was loaded with ``fragment_scan_options`` saying
    otherwise) keeps what it has read of the file until the scan ends: 2.2 million
    SimpleCoT rows in one Parquet file of 22 row groups held 1.7 GiB by the end of the
    pass, against 0.45 GiB a row group at a time.  A preview, too, then reads the first row
    group, not the whole file ahead (and leaves no reads in flight for pyarrow to trip
    over at exit: apache/arrow#45214).  Otherwise, ``data`` as it is."""
    reshard = getattr(data, "reshard", None)
    if reshard is None or not _splittable(data, _SAME_TABLES):
        return data
    try:
        return reshard()
    except Exception:  # (a source it does not know how to split further)
        return data


def _first_tables(data: Any, batch_rows: int = BATCH_ROWS) -> Generator[pa.Table, None, None]:
    """A streamed dataset's rows from its start, as Arrow tables of at most ``batch_rows``
    rows, for a preview or a sample (``max_records_total``): read a Parquet row group at a
    time (:func:`_by_row_group`) and, where that gives the same rows
    (:data:`_BY_FILE_SAME`), a shard (a file) after another, each file's footer read when
    its turn comes.  A resharded whole reads every file's footer before its first row (a
    request each on the Hub: the first rows of a dataset of a thousand files would wait
    for a thousand of them).  A whole pass reads it whole: cut a file at a time, a stream
    of 2,000 small files took 4.6 s instead of 2.2."""
    for part in _parts(data):
        yield from _hf_tables(part, batch_rows)


def _parts(data: Any) -> Iterator[Any]:
    """``data``'s shards one after another, each made as its turn comes and read a row
    group at a time; or ``data`` whole, a row group at a time (see :func:`_first_tables`)."""
    shards = getattr(data, "num_shards", 1)
    by_file = shards > 1 and hasattr(data, "shard") and _splittable(data, _BY_FILE_SAME)
    parts: Iterator[Any] = _shards_of(data, shards) if by_file else iter(())
    try:
        part = next(parts, None)
    except Exception:  # (a dataset that cannot be cut into its shards)
        part = None
    if part is None:
        yield _by_row_group(data)
        return
    while part is not None:
        yield _by_row_group(part)
        try:
            part = next(parts, None)
        except Exception as exc:
            raise BatchInputError(f"Cannot read the streamed dataset: {_short(exc)}") from exc


FAN_OUT = 16
"""A stream of more shards than this is cut into this many parts, each part into as many,
and so on down to its shards (:func:`_shards_of`)."""


def _shards_of(data: Any, shards: int) -> Iterator[Any]:
    """``data``'s ``shards`` one after another.  A cut costs ``datasets`` time in
    proportion to the shards it is cut from: 2,000 small files cut one by one took 19 s to
    read (2 s whole); a part at a time (:data:`FAN_OUT`), 4.6 s: the cuts are O(n log n)."""
    if shards <= FAN_OUT:
        for index in range(shards):
            yield data.shard(num_shards=shards, index=index, contiguous=True)
        return
    for index in range(FAN_OUT):
        part = data.shard(num_shards=FAN_OUT, index=index, contiguous=True)
        yield from _shards_of(part, part.num_shards)


def _giving_back(tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """``tables``, and every ``GIVE_BACK_BYTES`` of them, what Arrow's pool has freed given
    back to the system (see ``GIVE_BACK_BYTES``)."""
    passed = 0
    for table in tables:
        yield table
        passed += table.nbytes
        if passed >= GIVE_BACK_BYTES:
            pa.default_memory_pool().release_unused()
            passed = 0


def _at_epoch_of(data: Any, derived: Any) -> Any:
    """``derived`` (``data.with_format(...)``) at ``data``'s epoch, which ``datasets`` 5.2
    does not carry over: a shuffled stream gives its rows in another order at each epoch
    (``set_epoch``), and a run reads them in the order ``data`` gives.  (Nor is ``take``
    used to read a stream's first rows: on a node's part of a stream,
    ``split_dataset_by_node``, it takes the first rows of the whole stream, then the
    node's among them.)"""
    epoch = getattr(data, "epoch", 0)
    if epoch and getattr(derived, "epoch", epoch) != epoch:
        derived.set_epoch(epoch)
    return derived


def _hf_tables(data: Any, batch_rows: int) -> Generator[pa.Table, None, None]:
    """A streamed dataset's rows as Arrow tables of ``batch_rows`` rows (its reading errors
    as :class:`BatchInputError`), in the order it gives them (:func:`_at_epoch_of`)."""
    try:
        yield from _at_epoch_of(data, data.with_format("arrow")).iter(batch_size=batch_rows)
    except Exception as exc:  # the hub, files, the dataset's own map functions
        raise BatchInputError(f"Cannot read the streamed dataset: {_short(exc)}") from exc


class SelectionSource(RowSource):
    """A Hugging Face dataset that selects rows of its table (after ``shuffle``,
    ``filter``, ``select``, ``train_test_split``: an indices mapping).

    A few rows (a preview's, a retry's) are read through ``datasets``' own indexing.  The
    first bigger read writes the whole selection out in its order, a batch at a time, to a
    temporary Arrow file (:func:`_write_selection`), which every read after comes from:
    taking the selection from the table whole held it all in memory (2.9 GiB for 2.2
    million shuffled SimpleCoT rows)."""

    FEW_ROWS = 1_000

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset.with_format("arrow")
        self.columns = list(dataset.column_names)
        self.num_rows = len(dataset)
        self._written: TableSource | None = None
        self._lock = threading.Lock()

    def _select(self, columns: Sequence[str] | None) -> Any:
        if columns is None:
            return self._dataset
        return self._dataset.select_columns([c for c in self.columns if c in columns])

    def _whole(self) -> TableSource:
        with self._lock:
            if self._written is None:
                keep = _TempDir()
                path = os.path.join(keep.name, "rows.arrow")
                data = self._dataset
                parts = _selection_parts(data)
                if parts is not None:
                    _write_selection(*parts, path)
                    table = pa.ipc.open_file(pa.memory_map(path)).read_all()
                else:  # (not the datasets this was written for: its own, slower way)
                    table = data.flatten_indices(cache_file_name=path)[:]
                self._written = TableSource(table, keep=keep)
            return self._written

    def read(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.labelled(self.read_raw(start, stop, columns), start)

    def read_raw(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pa.Table:
        stop = max(start, min(stop, self.num_rows))
        if self._written is None and stop - start <= self.FEW_ROWS:
            rows: pa.Table = self._select(columns)[start:stop]
            return rows.combine_chunks()
        return self._whole().read_raw(start, stop, columns)

    def take(self, positions: Sequence[int], columns: Sequence[str] | None = None) -> pd.DataFrame:
        picked = [int(p) for p in positions]
        if self._written is None and len(picked) <= self.FEW_ROWS:
            rows = self._select(columns)[picked] if picked else self.read_raw(0, 0, columns)
            return _to_pandas(rows, pd.Index(picked))
        return self._whole().take(picked, columns)

    def _write_parquet(self, path: str) -> None:
        self._whole()._write_parquet(path)


def _selection_parts(dataset: Any) -> tuple[pa.Table, pa.ChunkedArray] | None:
    """A selecting dataset's whole table and the positions it selects from it, as the
    ``datasets`` releases this was written for keep them (private attributes: None when
    they are not there, and the dataset's own ``flatten_indices`` is used instead)."""
    backing = getattr(getattr(dataset, "data", None), "table", None)
    indices = getattr(getattr(dataset, "_indices", None), "table", None)
    if not (isinstance(backing, pa.Table) and isinstance(indices, pa.Table)):
        return None
    return (backing, indices.column(0)) if indices.num_columns == 1 else None


def _write_selection(table: pa.Table, indices: pa.ChunkedArray, path: str) -> None:
    """Write the rows of ``table`` at ``indices``, in that order, as an Arrow file.

    ``SELECTION_ROWS`` rows at a time: each record batch of ``table`` gives the rows it
    holds (one ``take`` each, in the order of the file), which are then put in the
    selection's order.  Arrow's ``take`` on the whole table joined its chunks first, and
    ``datasets``' ``flatten_indices`` gathers one slice a row: 2.2 million shuffled
    SimpleCoT rows took 42 s that way, about 7 s this way (50,000 rows at a time: 206 MiB
    of anonymous memory at most; 25,000: 151 MiB and 11 s)."""
    batches = table.to_batches()
    starts = np.cumsum([0] + [b.num_rows for b in batches])
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for lo in range(0, len(indices), SELECTION_ROWS):
            # (the indices a window at a time: all of them as numbers would grow with the rows)
            wanted = indices.slice(lo, SELECTION_ROWS).to_numpy().astype(np.int64)
            order = np.argsort(wanted, kind="stable")
            ordered = wanted[order]
            which = np.searchsorted(starts, ordered, side="right") - 1
            cuts = [0, *(np.flatnonzero(np.diff(which)) + 1).tolist(), len(ordered)]
            pieces = [
                batches[int(which[a])].take(pa.array(ordered[a:b] - starts[which[a]]))
                for a, b in itertools.pairwise(cuts)
            ]
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            gathered = pa.Table.from_batches(pieces, schema=table.schema)
            del pieces
            writer.write_table(gathered.take(pa.array(inverse)))
            del gathered


def _from_hf_id(spec: str, hf_split: str | None, limit: int | None) -> RowSource:
    """``hf://<dataset id or local folder>[:<split>]`` through ``datasets.load_dataset``."""
    dataset_id, _, split_in_uri = spec.rpartition(":")
    if not dataset_id:
        dataset_id, split_in_uri = spec, ""
    split = hf_split or split_in_uri or "train"
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BatchInputError(
            "Reading hf:// datasets needs the 'datasets' package: "
            "pip install 'bedrock-batch-nb[hf]'."
        ) from exc
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # hub or file errors of many kinds
        raise BatchInputError(
            f"Cannot load Hugging Face dataset {dataset_id!r} split {split!r}: {_short(exc)}"
        ) from exc
    return _from_hf_dataset(ds, limit)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
