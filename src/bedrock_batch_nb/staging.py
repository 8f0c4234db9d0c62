"""How records are written as Bedrock batch input and staged on S3.

Each record is one JSONL line ``{"recordId": "R0000000042", "modelInput": {...}}``.  The
record id is ``R`` and the row's position in the input, zero-padded to ten digits (eleven
alphanumeric characters, the form Bedrock's documentation shows), so every output line
maps back to its row.

Building the request body once per record with ``json.dumps`` is the slow way; instead the
adapter builds one body around a marker and each record splices its JSON-escaped text in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .aws import upload, upload_pieces
from .chunking import Chunk
from .models import InferenceParams, ModelAdapter

RECORD_ID_PREFIX = "R"
_ID_DIGITS = 10
_POWERS = 10 ** np.arange(_ID_DIGITS - 1, -1, -1, dtype=np.int64)
_PIECE_BYTES = 256 * 1024
"""Bytes of text escaped at a time (the passes over it stay in the CPU cache)."""
_ORDINARY = bytes(range(0x20, 0x100)) + b"\t\n\r"
"""Bytes that need no escape or are escaped in bulk (everything but the other controls)."""
_MARKER = "@@bedrock-batch-nb:text@@"


@dataclass(frozen=True)
class TextParts:
    """Texts given as the pieces Arrow joins into them, element by element: a prompt
    template's literals (scalars) and columns (string arrays, at least one).  Staging
    joins them with each record's id in one pass, not the texts first and the ids after."""

    parts: tuple[pa.Array | pa.Scalar, ...]

    def __len__(self) -> int:
        return next(len(p) for p in self.parts if isinstance(p, pa.Array))

    def joined(self) -> pa.Array:
        """The texts themselves."""
        empty = pa.scalar("", pa.large_string())
        texts: pa.Array = pc.binary_join_element_wise(*self.parts, empty)
        return texts


def record_id(position: int) -> str:
    return f"{RECORD_ID_PREFIX}{position:010d}"


def position_of(rid: str) -> int | None:
    """The input position a record id stands for, or None for an id that is not ours."""
    if len(rid) != 11 or not rid.startswith(RECORD_ID_PREFIX) or not rid[1:].isdigit():
        return None
    return int(rid[1:])


@dataclass(frozen=True)
class RunLayout:
    """Where one run's files live: everything under ``s3://<bucket>/<prefix>/<run_id>/``."""

    bucket: str
    s3_prefix: str
    run_id: str

    @property
    def root_key(self) -> str:
        return f"{self.s3_prefix.strip('/')}/{self.run_id}" if self.s3_prefix else self.run_id

    @property
    def root_uri(self) -> str:
        return f"s3://{self.bucket}/{self.root_key}/"

    def input_key(self, chunk: Chunk, attempt: int = 0) -> str:
        """``input/part-00001.jsonl``; retries of failed records ``input/retry1-00001.jsonl``."""
        stem = f"retry{attempt}" if attempt else "part"
        return f"{self.root_key}/input/{stem}-{chunk.index:05d}.jsonl"

    def input_uri(self, chunk: Chunk, attempt: int = 0) -> str:
        return f"s3://{self.bucket}/{self.input_key(chunk, attempt)}"

    @property
    def output_key(self) -> str:
        return f"{self.root_key}/output/"

    @property
    def output_uri(self) -> str:
        return f"s3://{self.bucket}/{self.output_key}"

    def job_output_key(self, job_id: str) -> str:
        return f"{self.output_key}{job_id}/"

    @property
    def results_key(self) -> str:
        return f"{self.root_key}/results/results.parquet"

    @property
    def results_uri(self) -> str:
        return f"s3://{self.bucket}/{self.results_key}"


class RecordBuilder:
    """Turns texts into JSONL record lines for one adapter and one set of parameters."""

    def __init__(
        self, adapter: ModelAdapter, *, system: str | None, params: InferenceParams
    ) -> None:
        self.adapter = adapter
        self.system = system
        self.params = params
        body = json.dumps(
            adapter.build_request(_MARKER, system=system, params=params),
            ensure_ascii=False,
            separators=(",", ":"),
        )
        parts = body.split(_MARKER)
        self._parts: tuple[str, str] | None = (parts[0], parts[1]) if len(parts) == 2 else None

    def model_input(self, text: str) -> dict[str, Any]:
        """The request body for one text (what preview and on-demand calls send)."""
        return self.adapter.build_request(text, system=self.system, params=self.params)

    def lines(self, texts: Iterable[str], positions: Iterable[int]) -> list[str]:
        """One JSONL line (without newline) per text."""
        dumps = json.dumps
        if self._parts is None:  # the adapter transforms the text: build each body in full
            return [
                dumps(
                    {"recordId": record_id(p), "modelInput": self.model_input(t)},
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                for t, p in zip(texts, positions, strict=True)
            ]
        head, tail = self._parts
        # encode_basestring is json.dumps(t, ensure_ascii=False) for a str, without the
        # call overhead: the quoted, escaped string.
        return [
            f'{{"recordId":"{RECORD_ID_PREFIX}{p:010d}","modelInput":{head}'
            f"{encode_basestring(t)[1:-1]}{tail}}}"
            for t, p in zip(texts, positions, strict=True)
        ]

    def body(self, texts: Iterable[str] | pa.Array | TextParts, positions: Iterable[int]) -> bytes:
        """The JSONL file of these records: the same bytes as ``jsonl_body(lines(...))``."""
        return b"".join(self.body_parts(texts, positions))

    def body_parts(
        self, texts: Iterable[str] | pa.Array | TextParts, positions: Iterable[int]
    ) -> list[bytes | bytearray]:
        """:meth:`body` in consecutive parts, for a caller that joins several calls' parts
        into one file (a job's file is built a batch of rows at a time): each byte of the
        file is then copied once, not once per join.

        The records are built in bulk: each text, straight from Arrow's buffer for an
        Arrow array, is put after its record id and between two marks (``NUL``, the ten
        digits, ``SOH``, the text: one Arrow call for the batch, which also renders the
        texts given as :class:`TextParts`); then, a few hundred KiB
        at a time (so that every pass stays in the CPU cache and no large buffer is
        allocated per pass), the five characters JSON escapes in ordinary text (quote,
        backslash, newline, carriage return, tab) are replaced, and each mark becomes the
        JSON around the id.  Texts with other control characters take the per-record
        path."""
        if self._parts is None:
            return [jsonl_body(self.lines(_as_list(texts), positions))]
        head, tail = self._parts
        start = f'{{"recordId":"{RECORD_ID_PREFIX}'.encode()
        mid = f'","modelInput":{head}'.encode()
        end = f"{tail}}}\n".encode()
        if not isinstance(texts, pa.ChunkedArray | pa.Array | TextParts):
            listed = texts if isinstance(texts, list) else list(texts)
            try:
                texts = pa.array(listed, pa.large_string())
            except (pa.ArrowException, UnicodeError):  # not all str, or not encodable
                ids = np.fromiter(positions, dtype=np.int64, count=len(listed))
                return [self._body_per_record(listed, ids, start, mid, end)]
        count = len(texts)
        ids = np.fromiter(positions, dtype=np.int64, count=count)
        if not count:
            return []
        if (ids >= 10**_ID_DIGITS).any() or (ids < 0).any():
            return [self._body_per_record(_as_list(texts), ids, start, mid, end)]
        data, offsets = _id_marked(texts, ids)
        # Pieces of whole records, about _PIECE_BYTES each.
        cuts = np.searchsorted(offsets, np.arange(offsets[0], offsets[-1], _PIECE_BYTES))
        cuts = np.unique(np.append(cuts, count))
        pieces: list[bytes | bytearray] = []
        first = 0
        for last in cuts.tolist():
            if last <= first:
                continue
            piece = data[int(offsets[first]) : int(offsets[last])].tobytes()
            if piece.translate(None, _ORDINARY) != _MARKS * (last - first):
                # a NUL, a SOH or another control character inside a text
                return [self._body_per_record(_as_list(texts), ids, start, mid, end)]
            escaped = (
                piece.replace(b"\\", b"\\\\")
                .replace(b'"', b'\\"')
                .replace(b"\n", b"\\n")
                .replace(b"\r", b"\\r")
                .replace(b"\t", b"\\t")
            )
            pieces.append(escaped.replace(b"\x01", mid).replace(b"\x00", end + start))
            first = last
        # each record's NUL became the end of the one before and its own start: the first
        # has no record before it, and the last still needs its end
        opening = bytearray(pieces[0])
        del opening[: len(end)]
        pieces[0] = opening
        pieces.append(end)
        return pieces

    @staticmethod
    def _body_per_record(
        texts: list[str], ids: npt.NDArray[Any], start: bytes, mid: bytes, end: bytes
    ) -> bytes:
        parts: list[bytes] = []
        add = parts.append
        for t, p in zip(texts, ids.tolist(), strict=True):
            add(start + b"%010d" % p)
            add(mid)
            add(encode_basestring(t)[1:-1].encode("utf-8"))
            add(end)
        return b"".join(parts)


def _as_list(texts: Iterable[str] | pa.Array | TextParts) -> list[str]:
    if isinstance(texts, TextParts):
        texts = texts.joined()
    if isinstance(texts, pa.ChunkedArray | pa.Array):
        values: list[str] = texts.to_pylist()
        return values
    return texts if isinstance(texts, list) else list(texts)


_MARKS = b"\x00\x01"
"""What is left of a record's id and text once its ordinary bytes are taken out."""


def _id_marked(
    texts: pa.Array | pa.ChunkedArray | TextParts, ids: npt.NDArray[Any]
) -> tuple[memoryview, npt.NDArray[Any]]:
    """Each text's UTF-8 bytes after a NUL, its id's ten digits and a SOH, straight from
    Arrow's buffers (a :class:`TextParts`' pieces joined there and then), and where each
    record starts (one more offset for the end)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    parts = texts.parts if isinstance(texts, TextParts) else (texts,)
    marked = np.zeros((len(ids), _ID_DIGITS + 2), dtype=np.uint8)  # NUL, the digits, SOH
    marked[:, 1:-1] = ids[:, None] // _POWERS % 10 + ord("0")
    marked[:, -1] = 1
    large = pa.large_binary()
    heads = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(_ID_DIGITS + 2), len(ids), [None, pa.py_buffer(marked)]
    ).cast(large)
    pieces = [
        p.cast(large) if isinstance(p, pa.Scalar) else p.cast(pa.large_string()).cast(large)
        for p in parts
    ]
    joined = pc.binary_join_element_wise(heads, *pieces, pa.scalar(b"", large))
    _, offsets, data = joined.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[joined.offset : joined.offset + len(ids) + 1]
    return memoryview(data), bounds


def put_options(kms_key_id: str | None, bucket_owner: str | None) -> dict[str, Any]:
    """Extra ``put_object`` arguments for every write of a run: SSE-KMS with the run's key,
    and the expected bucket owner."""
    extra: dict[str, Any] = {}
    if kms_key_id:
        extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key_id)
    if bucket_owner:
        extra["ExpectedBucketOwner"] = bucket_owner
    return extra


def jsonl_body(lines: Iterable[str]) -> bytes:
    """The bytes of a JSONL file holding ``lines``."""
    return ("\n".join(lines) + "\n").encode("utf-8")


def put_jsonl(
    s3: Any,
    bucket: str,
    key: str,
    body: bytes | Iterable[bytes | bytearray],
    *,
    kms_key_id: str | None = None,
    bucket_owner: str | None = None,
) -> None:
    """Upload a JSONL file's bytes, with their CRC32 for S3 to check (:func:`aws.upload`),
    or its pieces as they come (:func:`aws.upload_pieces`)."""
    extra = {"ContentType": "application/jsonl", **put_options(kms_key_id, bucket_owner)}
    if isinstance(body, bytes):
        upload(s3, body, bucket, key, **extra)
    else:
        upload_pieces(s3, body, bucket, key, **extra)
