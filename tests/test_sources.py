"""Data sources: DataFrames, local CSV/TSV/Parquet/JSONL, Hugging Face datasets, errors."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bedrock_batch_nb import sources
from bedrock_batch_nb.errors import BatchInputError
from bedrock_batch_nb.sources import (
    FrameSource,
    TableSource,
    load_rows,
    open_source,
    parse_s3_uri,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"topic": ["cats", "dogs", "ünïcode ✓", 'quotes "and" {braces}'], "n": [1, 2, 3, 4]}
    )


def test_dataframe_is_used_as_given_and_capped(frame: pd.DataFrame) -> None:
    assert load_rows(frame) is frame
    capped = load_rows(frame, max_records_total=2)
    assert list(capped["topic"]) == ["cats", "dogs"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_local_files_round_trip(tmp_path: Path, frame: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    rows = load_rows(str(path))
    assert list(rows.columns) == ["topic", "n"]
    assert list(rows["topic"]) == list(frame["topic"])
    assert list(rows["n"]) == [1, 2, 3, 4]
    assert len(load_rows(path, max_records_total=3)) == 3


def test_csv_keeps_na_like_words_as_text(tmp_path: Path) -> None:
    path = tmp_path / "words.csv"
    path.write_text("word,n\nNA,1\nnull,2\n,3\nNone,4\n")
    rows = load_rows(path)
    assert list(rows["word"].iloc[[0, 1, 3]]) == ["NA", "null", "None"]
    assert pd.isna(rows["word"].iloc[2])


def test_hugging_face_dataset_from_local_files(tmp_path: Path, frame: pd.DataFrame) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    frame.to_csv(folder / "train.csv", index=False)
    rows = load_rows(f"hf://{folder}", max_records_total=3)
    assert list(rows["topic"]) == list(frame["topic"][:3])
    rows = load_rows(f"hf://{folder}:train")
    assert len(rows) == 4


def test_hugging_face_dataset_object(frame: pd.DataFrame) -> None:
    import datasets

    ds = datasets.Dataset.from_pandas(frame)
    rows = load_rows(ds, max_records_total=2)
    assert list(rows["topic"]) == ["cats", "dogs"]


def test_a_streamed_dataset_is_previewed_from_its_start_and_read_whole_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``load_dataset(..., streaming=True)`` gives an IterableDataset: a preview reads a few
    rows of it, not the stream; a run's reads come from one pass over it, kept on disk."""
    import datasets

    produced = 0

    def rows() -> Iterator[dict[str, object]]:
        nonlocal produced
        for i in range(5000):
            produced += 1
            yield {"text": f"row {i}", "n": i}

    monkeypatch.setattr(sources, "BATCH_ROWS", 700)  # the pass in several batches
    monkeypatch.setattr(sources, "GIVE_BACK_BYTES", 1)  # the pool emptied after each batch
    streamed = datasets.IterableDataset.from_generator(rows)
    source = open_source(streamed, max_records_total=4000)
    assert list(source.head(3)["text"]) == ["row 0", "row 1", "row 2"]
    assert produced < 1000  # the preview's rows, not the whole stream
    assert source.num_rows == 4000
    assert list(source.read(3998, 4000)["n"]) == [3998, 3999]
    assert list(source.take([3999, 0], ["text"])["text"]) == ["row 3999", "row 0"]
    assert list(source.frame()["text"]) == [f"row {i}" for i in range(4000)]
    produced_once = produced
    source.read(0, 4000)
    assert produced == produced_once  # read from the pass's file, not streamed again


def parquet_stream(tmp_path: Path) -> tuple[object, list[int]]:
    """``load_dataset(..., streaming=True)`` over two Parquet files of 150-row row groups
    (900 rows), and the ``n`` of its rows in the order the files hold them."""
    import datasets

    files = []
    for part in range(2):
        n = list(range(part * 450, (part + 1) * 450))
        table = pa.table({"text": [f"row {i}" for i in n], "n": n})
        files.append(str(tmp_path / f"part-{part}.parquet"))
        pq.write_table(table, files[-1], row_group_size=150)
    streamed = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    return streamed, list(range(900))


def passes_over(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of shards of each dataset a streamed pass reads, as the pass goes."""
    shards: list[int] = []
    read = sources._hf_tables

    def counted(data: object, batch_rows: int) -> Iterator[pa.Table]:
        shards.append(data.num_shards)  # type: ignore[attr-defined]
        return read(data, batch_rows)

    monkeypatch.setattr(sources, "_hf_tables", counted)
    return shards


def test_a_streamed_parquet_dataset_is_read_a_row_group_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is one scan per shard, and Arrow keeps what a scan has read until it ends:
    with a shard per row group, the pass holds one row group at a time, rows in order."""
    streamed, order = parquet_stream(tmp_path)
    shards = passes_over(monkeypatch)
    source = open_source(streamed)
    assert list(source.frame()["n"]) == order
    assert source.read(449, 451)["text"].tolist() == ["row 449", "row 450"]
    split = hasattr(streamed, "reshard")  # (datasets releases of 2026 on)
    assert streamed.num_shards == 2  # type: ignore[attr-defined]
    assert shards == ([6] if split else [2])  # (the whole: six row groups of two files)


def test_the_first_rows_of_a_streamed_dataset_are_read_from_the_files_they_are_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample of a big dataset (``max_records_total``) reads no further than its rows:
    on the Hub, no other file's footer is fetched before they are read."""
    import datasets

    streamed, order = parquet_stream(tmp_path)  # two files of 450 rows
    shards = passes_over(monkeypatch)
    made: list[int] = []
    shard = type(streamed).shard

    def cut(data: object, num_shards: int, index: int, contiguous: bool = True) -> object:
        made.append(index)
        return shard(data, num_shards=num_shards, index=index, contiguous=contiguous)  # type: ignore[call-arg]

    monkeypatch.setattr(type(streamed), "shard", cut)
    groups = 3 if hasattr(streamed, "reshard") else 1  # (row groups a file, once resharded)
    assert list(open_source(streamed, max_records_total=400).frame()["n"]) == order[:400]
    assert made == [0] and shards == [groups]
    made.clear()
    shards.clear()
    assert list(open_source(streamed, max_records_total=500).frame()["n"]) == order[:500]
    assert made == [0, 1] and shards == [groups, groups]
    # a stream of more files than are cut at once: cut in parts, and parts of parts
    files = []
    for i in range(40):
        files.append(str(tmp_path / f"small-{i:02d}.parquet"))
        pq.write_table(pa.table({"n": [3 * i, 3 * i + 1, 3 * i + 2]}), files[-1])
    many = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    made.clear()
    assert list(open_source(many, max_records_total=100).frame()["n"]) == list(range(100))
    assert list(open_source(many).head(4)["n"]) == [0, 1, 2, 3]
    assert list(load_rows(many, max_records_total=120)["n"]) == list(range(120))
    assert sources.FAN_OUT < 40 and max(made) < sources.FAN_OUT


def bytes_read() -> int:
    """What this process has read so far (Linux's count of bytes read, cached or not)."""
    with open("/proc/self/io") as counters:
        return next(int(line.split()[1]) for line in counters if line.startswith("rchar:"))


def test_a_preview_of_a_streamed_dataset_shows_its_first_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Previewed from its first file (only that file's footer read first, not every
    file's) where that gives the same first rows; otherwise a row group at a time over
    all its files. Either way, the rows the dataset itself starts with."""
    import datasets

    streamed, _ = parquet_stream(tmp_path)  # two files of 450 rows
    split: list[int] = []
    by_row_group = sources._by_row_group

    def counted(data: object) -> object:
        split.append(data.num_shards)  # type: ignore[attr-defined]
        return by_row_group(data)

    monkeypatch.setattr(sources, "_by_row_group", counted)
    pipelines = {
        "as loaded": (streamed, 1),
        "columns": (streamed.select_columns(["n"]), 1),  # type: ignore[attr-defined]
        "skipped": (streamed.skip(448), 2),  # type: ignore[attr-defined]
        "mapped": (streamed.map(lambda b: {"m": [n * 2 for n in b["n"]]}, batched=True), 2),  # type: ignore[attr-defined]
        "concatenated": (datasets.concatenate_datasets([streamed.take(3), streamed]), 4),  # type: ignore[attr-defined, list-item]
    }
    for name, (data, shards_split) in pipelines.items():
        split.clear()
        own = [row["n"] for row, _ in zip(data, range(5), strict=False)]
        assert list(open_source(data).head(5)["n"]) == own, name
        assert split == [shards_split], name
    # a first file of fewer rows than the preview's: then over all the files
    files = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    pq.write_table(pa.table({"n": [0, 1, 2]}), files[0])
    pq.write_table(pa.table({"n": range(3, 13)}), files[1])
    split.clear()
    small_first = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    assert list(open_source(small_first).head(5)["n"]) == [0, 1, 2, 3, 4]
    assert split == [1, 1]  # the first file, then the second, for the rows it lacks


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="Linux's I/O counters")
def test_a_streamed_parquet_dataset_is_previewed_from_its_first_row_group(
    tmp_path: Path,
) -> None:
    """A preview of a streamed file reads its first row group, not the file: a scan of the
    whole file fetches every row group ahead (a dataset on the Hub: downloads it), and
    left unfinished, pyarrow may abort or hang as the process exits."""
    import datasets

    path = tmp_path / "rows.parquet"
    texts = [hashlib.sha256(str(i).encode()).hexdigest() * 6 for i in range(24_000)]
    pq.write_table(pa.table({"text": texts, "n": range(24_000)}), path, row_group_size=1_000)
    streamed = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)
    source = open_source(streamed)
    before = bytes_read()
    assert list(source.head(5)["n"]) == [0, 1, 2, 3, 4]
    read = bytes_read() - before
    assert read < path.stat().st_size / 4  # (24 row groups: the first, and the footer)


def test_a_shuffled_or_split_streamed_dataset_keeps_its_own_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Splitting it further would change which rows come in which order: a shuffled stream
    (its shards and a buffer shuffled, at its epoch), a node's part of one; read as they
    are, in the order the dataset itself gives."""
    import datasets.distributed

    streamed, _ = parquet_stream(tmp_path)
    shuffled = streamed.shuffle(seed=3, buffer_size=100)  # type: ignore[attr-defined]
    later = streamed.shuffle(seed=3, buffer_size=100)  # type: ignore[attr-defined]
    later.set_epoch(2)  # (its shards and buffer shuffled another way)
    node = datasets.distributed.split_dataset_by_node(streamed, rank=1, world_size=3)
    shards = passes_over(monkeypatch)
    for data in (shuffled, later, node):
        own = [row["n"] for row in data]
        assert list(open_source(data).frame()["n"]) == own
        assert list(open_source(data).head(5)["n"]) == own[:5]  # a preview's rows
        assert list(load_rows(data, max_records_total=50)["n"]) == own[:50]
    assert len(shards) == 9 and set(shards) == {2}  # (each read: the dataset as it is)


def test_a_streamed_dataset_that_fails_midway_says_why() -> None:
    import datasets

    def rows() -> Iterator[dict[str, object]]:
        yield {"text": "fine"}
        raise ConnectionError("the hub went away")

    source = open_source(datasets.IterableDataset.from_generator(rows))
    with pytest.raises(BatchInputError, match="Cannot read the streamed dataset"):
        source.read(0, 1)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_dataset_of_splits_asks_for_one(tmp_path: Path, streaming: bool) -> None:
    import datasets

    (tmp_path / "train.csv").write_text("topic\ncats\n")
    (tmp_path / "test.csv").write_text("topic\ndogs\n")
    files = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}
    splits = datasets.load_dataset("csv", data_files=files, streaming=streaming)
    with pytest.raises(BatchInputError, match=r"splits 'train', 'test': .* data\['train'\]"):
        open_source(splits)
    assert list(load_rows(splits["test"])["topic"]) == ["dogs"]


@pytest.mark.parametrize(
    ("on_disk", "gathered_by"),
    [(True, "engine"), (False, "engine"), (False, "datasets")],
)
def test_a_shuffled_or_filtered_dataset_is_read_in_its_own_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_disk: bool, gathered_by: str
) -> None:
    """Its rows come in the dataset's order, whether the engine gathers them itself or,
    for a ``datasets`` release that keeps its selection otherwise, ``flatten_indices``
    does."""
    import gc

    import datasets

    numbers = pd.DataFrame({"text": [f"row {i}" for i in range(3000)], "n": range(3000)})
    ds = datasets.Dataset.from_pandas(numbers)
    if on_disk:  # as load_dataset gives it: memory-mapped cache files
        ds.save_to_disk(str(tmp_path / "saved"))
        ds = datasets.load_from_disk(str(tmp_path / "saved"))
    picked = ds.shuffle(seed=3).filter(lambda row: row["n"] % 3 != 0)
    expected = [f"row {n}" for n in picked["n"]]
    assert expected != sorted(expected, key=lambda t: int(t.split()[1]))  # really shuffled

    def copies() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("bedrock-batch-*/rows.arrow"))

    before = copies()
    monkeypatch.setattr(sources, "SELECTION_ROWS", 700)  # gathered in several pieces
    assert sources._selection_parts(picked.with_format("arrow")) is not None
    if gathered_by == "datasets":
        monkeypatch.setattr(sources, "_selection_parts", lambda dataset: None)
    source = open_source(picked, max_records_total=1500)
    assert source.num_rows == 1500
    # a preview's rows, or a retry's, are read as they are
    assert list(source.head(3)["text"]) == expected[:3]
    assert list(source.take([1499, 0], ["text"])["text"]) == [expected[1499], expected[0]]
    assert copies() == before
    # a whole pass writes the selection out once, in order
    assert list(source.read(0, 1500)["text"]) == expected[:1500]
    assert list(source.read(0, 1500, ["n"]).columns) == ["n"]
    assert list(source.take([1499, 0])["text"]) == [expected[1499], expected[0]]
    made = copies() - before
    assert len(made) == 1
    del source
    gc.collect()
    assert not any(p.exists() for p in made)  # and gone with its source


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("nowhere/rows.csv", "No such file"),
        ("rows.xlsx", "Cannot tell the format"),
        (42, "Cannot read rows from a int"),
        ("s3://bucket-only", "Malformed S3 URI"),
    ],
)
def test_bad_sources_give_one_clear_error(data: object, message: str) -> None:
    with pytest.raises(BatchInputError, match=message):
        load_rows(data)


def test_corrupt_parquet_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(BatchInputError, match=r"Cannot read .*bad\.parquet as parquet"):
        load_rows(path)


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://b/k/x.csv") == ("b", "k/x.csv")
    with pytest.raises(BatchInputError):
        parse_s3_uri("http://b/k")


# ---- reading a record batch at a time ------------------------------------------------------


@pytest.fixture
def numbered(tmp_path: Path) -> Path:
    """A Parquet file of 1,000 rows in row groups of 128, with a named string index."""
    frame = pd.DataFrame(
        {"text": [f"row {i}" for i in range(1000)], "n": range(1000)},
        index=pd.Index([f"id{i}" for i in range(1000)], name="key"),
    )
    path = tmp_path / "numbered.parquet"
    frame.to_parquet(path, row_group_size=128)
    return path


def test_parquet_is_read_in_batches_with_its_own_index(
    numbered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "BATCH_ROWS", 100)
    source = open_source(numbered)
    assert isinstance(source, sources.ParquetSource)
    assert (source.columns, source.num_rows) == (["text", "n"], 1000)
    batches = list(source.batches(["text"], batch_rows=300))
    assert [len(b) for b in batches] == [300, 300, 300, 100]
    assert list(batches[1].columns) == ["text"]
    assert batches[1].index[0] == "id300" and batches[1]["text"].iloc[-1] == "row 599"
    whole = source.frame()
    assert whole.index.name == "key" and list(whole["n"]) == list(range(1000))


def test_parquet_reads_in_any_order_and_by_position(
    numbered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "BATCH_ROWS", 100)
    source = open_source(numbered, max_records_total=900)
    assert source.num_rows == 900
    # forward reads continue the open stream; a read behind it starts a new one
    for start, stop in [(0, 50), (50, 420), (700, 1000), (10, 12), (130, 131)]:
        part = source.read(start, stop)
        assert list(part["n"]) == list(range(start, min(stop, 900)))
        assert list(part.index) == [f"id{i}" for i in range(start, min(stop, 900))]
    picked = source.take([899, 3, 450, 4, 3], ["text"])
    assert list(picked["text"]) == ["row 899", "row 3", "row 450", "row 4", "row 3"]
    assert list(picked.index) == ["id899", "id3", "id450", "id4", "id3"]


@pytest.fixture
def decoded_batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows a batch of every Parquet batch stream opened from now on (its read-ahead's)."""
    sizes: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def recorded(self: pq.ParquetFile, *args: object, **kwargs: object) -> object:
        sizes.append(int(kwargs["batch_size"]))  # type: ignore[call-overload]
        return iter_batches(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", recorded)
    return sizes


def test_wide_rows_are_decoded_ahead_in_fewer_rows_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoded_batch_sizes: list[int]
) -> None:
    """The read-ahead decodes BATCH_ROWS rows a batch, fewer when that many rows would hold
    over READ_AHEAD_BYTES (long documents), and reads give the same rows either way."""
    texts = [f"doc {i} " + "x" * 5_000 for i in range(600)]
    path = tmp_path / "wide.parquet"
    pd.DataFrame({"doc": texts, "n": range(600)}).to_parquet(path, row_group_size=256)
    sizes = decoded_batch_sizes
    monkeypatch.setattr(sources, "READ_AHEAD_BYTES", 100_000)  # about 20 of these rows
    wide = open_source(path)
    got = pd.concat([wide.read(start, start + 250) for start in range(0, 600, 250)])
    assert list(got["doc"]) == texts and list(got["n"]) == list(range(600))
    assert sizes and {*sizes} == {sizes[0]} and 15 <= sizes[0] <= 20
    assert wide.batch_rows == sizes[0]  # and a run's passes over the rows go as far at a time
    lengths = [len(batch) for batch in wide.batches(["n"])]
    assert max(lengths) == sizes[0] and sum(lengths) == 600
    assert [start for start, _ in wide.raw_batches(["n"])][:2] == [0, sizes[0]]

    narrow = tmp_path / "narrow.parquet"  # 10,000 rows of these hold about 120 KB
    pd.DataFrame({"doc": [f"doc {i}" for i in range(600)]}).to_parquet(narrow)
    monkeypatch.setattr(sources, "READ_AHEAD_BYTES", 1_000_000)
    sizes.clear()
    assert list(open_source(narrow).read(0, 600)["doc"]) == [f"doc {i}" for i in range(600)]
    assert {*sizes} == {sources.BATCH_ROWS}  # short rows: BATCH_ROWS a batch


def test_rows_taken_fewer_at_a_time_are_decoded_ahead_fewer_at_a_time(
    numbered: Path, monkeypatch: pytest.MonkeyPatch, decoded_batch_sizes: list[int]
) -> None:
    """A pass that takes fewer rows at a time than the source's batches (a large embedding
    run's results, joined 2,048 rows at a time) has them decoded ahead in batches of its
    own size, not the source's, and reads the same rows; the source's own passes go on
    as before."""
    sizes = decoded_batch_sizes
    monkeypatch.setattr(sources, "BATCH_ROWS", 300)
    source = open_source(numbered)
    assert source.batch_rows == 300
    parts = list(source.raw_batches(batch_rows=120))
    assert [start for start, _ in parts] == list(range(0, 1000, 120))
    assert pa.concat_tables(t for _, t in parts).column("n").to_pylist() == list(range(1000))
    assert sizes and {*sizes} == {120}
    assert source.batch_rows == 300  # (only while the pass lasts)
    sizes.clear()
    assert [len(t) for _, t in source.raw_batches()] == [300, 300, 300, 100]
    assert {*sizes} == {300}


def test_wide_rows_held_in_arrow_are_read_in_fewer_rows_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An Arrow table's rows, and a DataFrame's held by pandas in Arrow (pandas 3's
    ``str``), go BATCH_ROWS at a time, fewer when that many would hold over
    READ_AHEAD_BYTES; a DataFrame of Python ``str`` objects keeps BATCH_ROWS (their sizes
    are not summed)."""
    monkeypatch.setattr(sources, "READ_AHEAD_BYTES", 100_000)  # about 20 of these rows
    texts = [f"doc {i} " + "x" * 5_000 for i in range(600)]
    table = pa.table({"doc": texts, "n": list(range(600))})
    frame = pd.DataFrame({"doc": pd.array(texts, dtype="string[pyarrow]"), "n": range(600)})
    for wide in (TableSource(table), FrameSource(frame)):
        assert 15 <= wide.batch_rows <= 20
        lengths = [len(batch) for batch in wide.batches(["doc"])]
        assert max(lengths) == wide.batch_rows and sum(lengths) == 600
        got = pd.concat(wide.batches())
        assert list(got["doc"]) == texts and list(got["n"]) == list(range(600))
    python_strs = pd.DataFrame({"doc": texts}).astype(object)  # (pandas before 3.0's)
    assert FrameSource(python_strs).batch_rows == sources.BATCH_ROWS
    narrow = pa.table({"doc": [f"doc {i}" for i in range(600)]})  # 10,000: about 110 KB
    monkeypatch.setattr(sources, "READ_AHEAD_BYTES", 1_000_000)
    assert TableSource(narrow).batch_rows == sources.BATCH_ROWS


def convert_in_small_blocks(
    monkeypatch: pytest.MonkeyPatch, block: int = 4096, sample: int = 8192
) -> None:
    """Convert even a small CSV or JSONL file, in small blocks, with a small type sample."""
    monkeypatch.setattr(sources, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(sources, "STREAM_BLOCK_BYTES", block)
    monkeypatch.setattr(sources, "STREAM_SAMPLE_BYTES", sample)


def test_big_csv_and_jsonl_are_converted_a_block_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    convert_in_small_blocks(monkeypatch)
    monkeypatch.setattr(sources, "STREAM_GROUP_BYTES", 40_000)
    # numbers for the first rows, then text: the sample's types do not fit the rest
    values = [str(i) for i in range(3000)] + ["many"] * 10
    frame = pd.DataFrame({"topic": [f"t{i}" for i in range(len(values))], "count": values})
    csv = tmp_path / "big.csv"
    frame.to_csv(csv, index=False)
    source = open_source(csv)
    assert source.num_rows == len(values)
    assert list(source.read(2999, 3010)["count"].astype(str)) == values[2999:]
    with source.parquet_file() as converted:
        groups = pq.ParquetFile(converted).metadata.num_row_groups
    assert 1 < groups < 4  # blocks (about 10) gathered into row groups
    jsonl = tmp_path / "big.jsonl"
    frame.to_json(jsonl, orient="records", lines=True)
    rows = open_source(jsonl).frame()
    assert list(rows["topic"]) == list(frame["topic"])


@pytest.mark.parametrize("name", ["big.csv", "big.csv.gz", "big.tsv.bz2", "big.jsonl.zst"])
def test_a_converted_file_tells_how_far_it_has_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    convert_in_small_blocks(monkeypatch)
    frame = pd.DataFrame({"text": [f'text {i}, "quoted"\nover two lines' for i in range(4000)]})
    frame["n"] = range(len(frame))
    path = tmp_path / name
    codec = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}.get(path.suffix)
    with pa.output_stream(path, compression=codec) as out:  # (compressed by its name)
        if ".jsonl" in name:
            out.write(frame.to_json(orient="records", lines=True).encode())
        else:
            out.write(frame.to_csv(sep="\t" if ".tsv" in name else ",", index=False).encode())
    told: list[tuple[str, int, int]] = []
    rows = open_source(path, on_bytes_read=lambda *said: told.append(said)).frame()
    assert list(rows["text"]) == list(frame["text"]) and list(rows["n"]) == list(frame["n"])
    size = path.stat().st_size  # bytes of the file as it is on disk, compressed or not
    assert {what for what, _, _ in told} == {f"Converting {path} to Parquet"}
    assert {total for _, _, total in told} == {size}
    done = [done for _, done, _ in told]
    assert done == sorted(done) and done[-1] == size
    if codec is None:  # (a compressed one this small is read whole by its first block)
        assert len(set(done)) > 1


@pytest.mark.parametrize("streamed", [False, True])
def test_csv_cells_may_span_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    # Prompts and documents hold newlines: spreadsheets and pandas quote such cells.  The
    # file is bigger than Arrow's 1 MiB read block, so a block may end inside a cell.
    if streamed:
        convert_in_small_blocks(monkeypatch, block=64 * 1024, sample=sources.STREAM_SAMPLE_BYTES)
    texts = ["\n".join(f'line {j} of {i}, "quoted"' for j in range(5)) for i in range(12_000)]
    frame = pd.DataFrame({"text": texts, "n": range(len(texts))})
    path = tmp_path / "multiline.csv"
    frame.to_csv(path, index=False)
    assert path.stat().st_size > 2**20
    rows = load_rows(path)
    assert list(rows["text"]) == texts
    assert list(rows["n"]) == list(range(len(texts)))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_big_file_is_previewed_without_being_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    convert_in_small_blocks(monkeypatch)
    conversions: list[str] = []
    convert = sources._convert_to_parquet

    def counted(path: str, *rest: Any) -> None:
        conversions.append(path)
        convert(path, *rest)

    monkeypatch.setattr(sources, "_convert_to_parquet", counted)
    frame = pd.DataFrame({"topic": [f"t{i}" for i in range(3000)], "n": range(3000)})
    path = tmp_path / f"big{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    source = open_source(path)
    head = source.head(4, ["topic"])
    assert list(head.columns) == ["topic"] and list(head["topic"]) == ["t0", "t1", "t2", "t3"]
    assert len(open_source(path, max_records_total=2).head(4)) == 2
    assert conversions == []
    assert source.num_rows == 3000  # more than a preview: converted, once
    assert list(source.read(2998, 3000)["n"]) == [2998, 2999]
    assert list(source.head(2)["topic"]) == ["t0", "t1"]
    assert conversions == [str(path)]


def test_a_jsonl_key_first_met_far_down_becomes_a_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    convert_in_small_blocks(monkeypatch)
    path = tmp_path / "late.jsonl"
    with path.open("w") as f:
        for i in range(3000):
            f.write(json.dumps({"topic": f"t{i}", **({"note": f"n{i}"} if i > 2000 else {})}))
            f.write("\n")
    rows = open_source(path).frame()
    assert list(rows.columns) == ["topic", "note"]
    assert rows["note"].iloc[:2001].isna().all()
    assert list(rows["note"].iloc[2001:]) == [f"n{i}" for i in range(2001, 3000)]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_row_bigger_than_a_read_block_is_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    convert_in_small_blocks(monkeypatch, sample=65536)
    texts = [f"row {i}" for i in range(2000)]
    texts[1500] = "a long document, " * 1000  # 17 KB: over the block, within the sample
    frame = pd.DataFrame({"text": texts})
    path = tmp_path / f"long{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    assert list(open_source(path).frame()["text"]) == texts


@pytest.mark.parametrize("kind", ["frame", "parquet", "hf"])
def test_every_source_writes_itself_as_parquet(
    kind: str, numbered: Path, frame: pd.DataFrame
) -> None:
    import datasets

    data: object = {
        "frame": frame,
        "parquet": numbered,
        "hf": datasets.Dataset.from_pandas(frame),
    }[kind]
    source = open_source(data)
    with source.parquet_file() as path:
        back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(
        back.reset_index(drop=True), source.frame().reset_index(drop=True), check_dtype=False
    )
    if kind != "hf":
        assert list(back.index) == list(source.index)


def test_closing_a_parquet_source_stops_its_read_ahead(
    numbered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    def readers() -> int:
        return sum(t.name.startswith("parquet-read-ahead") for t in threading.enumerate())

    monkeypatch.setattr(sources, "BATCH_ROWS", 10)  # far more batches than the queues hold
    source = open_source(numbered)
    assert list(source.read(0, 5)["n"]) == list(range(5))
    assert readers() >= 1
    source.close()
    deadline = time.monotonic() + 10
    while readers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert readers() == 0
    assert list(source.read(3, 6)["n"]) == [3, 4, 5]  # reading again starts a new stream
    assert readers() >= 1
    del source  # a source dropped half-read stops its read-ahead too
    deadline = time.monotonic() + 10
    while readers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert readers() == 0


def test_copies_left_by_a_killed_process_are_deleted_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel killed mid-run (out of memory, a forced restart) cannot delete its copies
    of the rows; the next process that makes one deletes them."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    csv = tmp_path / "big.csv"
    pd.DataFrame({"topic": [f"t{i}" for i in range(500)]}).to_csv(csv, index=False)
    temp = tmp_path / "tmp"
    temp.mkdir()
    child = textwrap.dedent(
        f"""
        import sys, time
        from bedrock_batch_nb import sources
        sources.STREAM_MIN_BYTES = 0  # converted to a temporary Parquet file
        source = sources.open_source({str(csv)!r})
        assert source.num_rows == 500
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "TMPDIR": str(temp)}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        left = [p.name for p in temp.iterdir()]
        assert left == [f"bedrock-batch-{proc.pid}-{left[0].split('-', 3)[3]}"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [p.name for p in temp.iterdir()] == left  # nobody deleted it

    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(sources, "STREAM_MIN_BYTES", 0)
    source = open_source(csv)
    assert source.num_rows == 500
    mine = [p.name for p in temp.iterdir()]
    assert mine == [n for n in mine if n.startswith(f"bedrock-batch-{os.getpid()}-")] != []
