"""The reference's way, measured beside ours on the same machine and data.

Issue 5 states its goals as multiples of the public reference implementation (a Step
Functions stack whose Lambdas prepare and post-process batch jobs) measured "on the same
data and machine".  These functions follow the steps its Lambda code takes, with the same
libraries (pandas, boto3, the standard ``json``), so that ``make bench`` can measure that
baseline in the same minutes as the engine instead of comparing with figures from another
day (the machine's speed varies by 10-30 % between days):

Prepare, a chunk of ``records_per_job`` rows at a time:
  read the chunk as a DataFrame; give each row a uuid4 ``record_id``; save the chunk as
  snappy Parquet to S3 (what the outputs are joined to later); ``to_dict("records")``;
  per row, ``str.format(**row)`` of the template (or the embedding column) and the
  request as a dict; per record ``json.dumps``; ``"\\n".join``; one ``put_object``.

Collect, one job:
  read the saved input chunk from S3; read the whole output object and decode it; split it
  on ``}\\n{`` and ``json.loads`` each piece; per record, the last content block's text
  (an error line gets no response: its error is dropped); ``DataFrame(...).merge`` with the
  input on ``record_id`` (inner); ``to_parquet`` (snappy) and ``put_object``.

This is a yardstick, not part of the engine: nothing here is imported by ``src/``.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

ANTHROPIC_VERSION = "bedrock-2023-05-31"
MAX_TOKENS = 1024


def _chunks(path: str, rows: int) -> Iterator[pd.DataFrame]:
    """The source read ``rows`` at a time as DataFrames (as a chunked Parquet read does)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield batch.to_pandas()


def _claude(record_id: str, prompt: str) -> dict[str, Any]:
    return {
        "recordId": record_id,
        "modelInput": {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        },
    }


def _titan(record_id: str, text: str) -> dict[str, Any]:
    return {"recordId": record_id, "modelInput": {"inputText": text}}


def put_parquet(s3: Any, frame: pd.DataFrame, bucket: str, key: str) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="snappy")
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def prepare(
    s3: Any,
    path: str,
    bucket: str,
    prefix: str,
    *,
    template: str | None,
    text_column: str | None = None,
    records_per_job: int,
) -> tuple[int, int]:
    """Prepare and stage every job the reference's way; return (jobs, JSONL bytes).
    With ``template``, Claude requests of the rendered template; otherwise Titan
    embedding requests of ``text_column``."""
    jobs = staged = 0
    for index, chunk in enumerate(_chunks(path, records_per_job)):
        if "record_id" not in chunk.columns:
            chunk["record_id"] = [str(uuid.uuid4()) for _ in range(len(chunk))]
        put_parquet(s3, chunk, bucket, f"{prefix}/inputs_parquet/{index:04d}.snappy.parquet")
        rows = chunk.to_dict("records")
        if template is not None:
            records = [_claude(row["record_id"], template.format(**row)) for row in rows]
        else:
            assert text_column is not None
            records = [_titan(row["record_id"], row[text_column]) for row in rows]
        body = "\n".join(json.dumps(record) for record in records)
        s3.put_object(Bucket=bucket, Key=f"{prefix}/inputs_json/{index:04d}.jsonl", Body=body)
        jobs += 1
        staged += len(body.encode())
    return jobs, staged


def _response(record: dict[str, Any]) -> dict[str, Any]:
    output = record.get("modelOutput", {"content": [{"text": None}]})
    return {"record_id": record["recordId"], "response": output["content"][-1]["text"]}


def collect(s3: Any, bucket: str, input_key: str, output_key: str, result_key: str) -> pd.DataFrame:
    """Collect one job's output the reference's way; return the joined rows (written to
    ``result_key`` as well)."""
    inputs = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=input_key)["Body"].read()))
    text = s3.get_object(Bucket=bucket, Key=output_key)["Body"].read().decode("utf-8")
    pieces = text.strip().split("}\n{")
    last = len(pieces) - 1
    records = [
        json.loads(("{" if i else "") + piece + ("}" if i < last else ""))
        for i, piece in enumerate(pieces)
    ]
    joined = pd.DataFrame([_response(r) for r in records]).merge(inputs, on="record_id")
    put_parquet(s3, joined, bucket, result_key)
    return joined
