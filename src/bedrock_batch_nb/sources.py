"""Where the rows come from: a DataFrame, a CSV/Parquet/JSONL file (local or ``s3://``),
or a Hugging Face dataset (``hf://<id>[:<split>]`` or a ``datasets.Dataset``).

Everything becomes a pandas DataFrame whose index and column order are the user's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .errors import BatchInputError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def describe_source(data: Any) -> str:
    """A short human name for ``data`` (for messages and progress)."""
    if isinstance(data, pd.DataFrame):
        return f"DataFrame ({len(data):,} rows)"
    if isinstance(data, str | os.PathLike):
        return str(data)
    return type(data).__name__


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key, with a clear error if malformed."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise BatchInputError(f"Malformed S3 URI {uri!r}: expected s3://<bucket>/<key>.")
    return parsed.netloc, parsed.path.lstrip("/")


def load_rows(
    data: Any,
    *,
    max_records_total: int | None = None,
    hf_split: str | None = None,
    s3_client: Any = None,
) -> pd.DataFrame:
    """Load ``data`` as a DataFrame, keeping at most ``max_records_total`` rows."""
    frame = _load(data, hf_split=hf_split, s3_client=s3_client, limit=max_records_total)
    if max_records_total is not None:
        frame = frame.iloc[:max_records_total]
    return frame


def _load(data: Any, *, hf_split: str | None, s3_client: Any, limit: int | None) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if _is_hf_dataset(data):
        return _from_hf_dataset(data, limit)
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    if not isinstance(data, str):
        raise BatchInputError(
            f"Cannot read rows from a {type(data).__name__}: pass a pandas DataFrame, a path or "
            "s3:// URI of a CSV/Parquet/JSONL file, an hf://<dataset>[:<split>] id, or a "
            "datasets.Dataset."
        )
    if data.startswith("hf://"):
        return _from_hf_id(data[len("hf://") :], hf_split, limit)
    if data.startswith("s3://"):
        bucket, key = parse_s3_uri(data)
        fmt = _format_of(data)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        try:
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # botocore ClientError: NoSuchKey, AccessDenied, ...
            raise BatchInputError(f"Cannot read {data}: {_short(exc)}") from exc
        return _read_table(pa.BufferReader(body), fmt, data)
    fmt = _format_of(data)
    path = Path(data).expanduser()
    if not path.is_file():
        raise BatchInputError(f"No such file: {data}")
    return _read_table(str(path), fmt, data)


def _format_of(name: str) -> str:
    lowered = name.lower()
    for suffix in (".gz", ".bz2", ".zst"):
        lowered = lowered.removesuffix(suffix)
    ext = os.path.splitext(lowered)[1]
    if ext not in FORMATS:
        raise BatchInputError(
            f"Cannot tell the format of {name!r}: use a .csv, .tsv, .parquet or .jsonl file."
        )
    return FORMATS[ext]


def _read_table(source: Any, fmt: str, name: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            table = pq.read_table(source)
        elif fmt in ("csv", "tsv"):
            parse = pa_csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
            # Keep text as text: no "NA"/"null" strings turned into nulls except empty cells.
            convert = pa_csv.ConvertOptions(strings_can_be_null=True, null_values=[""])
            table = pa_csv.read_csv(source, parse_options=parse, convert_options=convert)
        else:
            table = pa_json.read_json(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchInputError(f"Cannot read {name} as {fmt}: {_short(exc)}") from exc
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _is_hf_dataset(data: Any) -> bool:
    module = type(data).__module__
    return module.startswith("datasets.") and hasattr(data, "to_pandas")


def _from_hf_dataset(data: Any, limit: int | None) -> pd.DataFrame:
    if limit is not None and limit < len(data):
        data = data.select(range(limit))
    frame = data.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    return frame


def _from_hf_id(spec: str, hf_split: str | None, limit: int | None) -> pd.DataFrame:
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
