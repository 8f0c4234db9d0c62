"""Data sources: DataFrames, local CSV/TSV/Parquet/JSONL, Hugging Face datasets, errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bedrock_batch_nb.errors import BatchInputError
from bedrock_batch_nb.sources import load_rows, parse_s3_uri


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
