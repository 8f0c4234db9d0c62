"""The boto3 clients a run uses, its AWS errors described, and its uploads to S3.

Clients are plain ``boto3`` clients, so endpoints, region and credentials come from the
standard chain (``AWS_ENDPOINT_URL_BEDROCK`` etc. for the local emulator); their session
is the run's own, whose responses' timestamps :func:`parse_timestamp` reads.  Retries of
throttling and transient errors are botocore's own standard retry mode.  The files a run
stages and keeps on S3 (job inputs, results, the saved rows) go through :func:`upload`,
or :func:`upload_pieces` for a job's input built as it is sent.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import io
import os
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
import botocore.utils
from botocore.config import Config

RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 10},
    max_pool_connections=32,
    user_agent_extra="bedrock-batch-nb",
)
S3_CONFIG = RETRY_CONFIG.merge(Config(s3={"payload_signing_enabled": False}))
"""The S3 client's: request bodies are not hashed with SHA-256 for the signature.  Every
upload carries its CRC32, which S3 checks against the body, and goes over TLS, which is
why botocore already leaves streamed uploads unsigned over HTTPS; a one-request
``PutObject`` of bytes it would hash whole (213 MiB of staged files for 200,000 rows:
about 0.15 s of CPU less here).  A bucket policy that refuses unsigned payloads (the
``s3:x-amz-content-sha256`` condition) refuses these uploads."""
SINGLE_PUT_BYTES = 64 * 2**20
"""Uploads up to this size are one ``PutObject``; larger ones s3transfer's parallel parts."""
_CRC_READ_BYTES = 1 << 20
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


@dataclass(frozen=True)
class Clients:
    bedrock: Any
    runtime: Any
    s3: Any

    @classmethod
    def create(cls, region: str | None = None, **credentials: str) -> Clients:
        """A run's clients, in a session of its own (``credentials``: explicit keys
        instead of the standard chain)."""
        core = botocore.session.get_session()
        core.register_component("data_loader", _shared_loader())
        parsers = core.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
        session = boto3.session.Session(botocore_session=core, region_name=region, **credentials)
        return cls(
            bedrock=session.client("bedrock", config=RETRY_CONFIG),
            runtime=session.client("bedrock-runtime", config=RETRY_CONFIG),
            s3=session.client("s3", config=S3_CONFIG),
        )


@functools.cache  # (once a process)
def load_client_models() -> None:
    """Parse now, on this thread, what creating a run's clients parses (their service
    models and endpoint rules, into the loader every run shares: :func:`_shared_loader`).
    ``%load_ext bedrock_batch_nb`` and :func:`notebook.form` call it, so that a notebook's
    first run does not parse them on its background thread while the kernel's event loop
    waits for the GIL (98-166 ms on a slow 2-core machine: benchmarks/first_clients.py).
    Once a process; makes no request and reads no credentials; a configuration botocore
    cannot read is left for the run to report."""
    # (a profile or config file botocore cannot read: the run's own clients say so)
    with contextlib.suppress(botocore.exceptions.BotoCoreError):
        Clients.create("us-east-1", aws_access_key_id="unused", aws_secret_access_key="unused")


_LOADER: botocore.loaders.Loader | None = None
_LOADER_LOCK = threading.Lock()


def _shared_loader() -> botocore.loaders.Loader:
    """One botocore data loader for every session the runs create.  A loader keeps the
    service models and endpoint rules it has parsed; a new session's own loader parsed
    them again, 70-230 ms of JSON decoding a run (holding the GIL, so a notebook's event
    loop stalled that long as a run started in the background), against about 20 ms with
    this one once it has loaded them.  A session is not safe to share across threads;
    its loader only caches what it reads, each model under its own key."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            loader = botocore.session.get_session().get_component("data_loader")
            assert isinstance(loader, botocore.loaders.Loader)
            _LOADER = loader
        return _LOADER


def parse_timestamp(value: Any) -> dt.datetime:
    """A timestamp in a response (``submitTime``, ``LastModified``, ...) as an aware
    datetime, as botocore's own parser gives it, but read by ``datetime.fromisoformat``
    when it can: botocore's dateutil-based parser made a list call of 45 jobs take 17 ms
    instead of 6 (four timestamps a job), on every poll.  Anything ``fromisoformat``
    does not read (or reads without a time zone) goes to botocore's parser."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    timestamp: dt.datetime = botocore.utils.parse_timestamp(value)
    return timestamp


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for other exceptions)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def describe_error(exc: BaseException) -> str:
    """``"<AWS error code or exception type>: <message>"`` on one line."""
    response = getattr(exc, "response", None)
    message = response.get("Error", {}).get("Message") if isinstance(response, dict) else None
    text = str(message or exc)
    first = text.splitlines()[0] if text else ""
    return f"{error_code(exc) or type(exc).__name__}: {first}"


def upload(
    s3: Any, body: bytes | str | os.PathLike[str] | IO[bytes], bucket: str, key: str, **extra: Any
) -> None:
    """Upload bytes, a local file (its path) or an open binary file, checked end to end.

    Up to ``SINGLE_PUT_BYTES``: one ``put_object`` carrying the body's CRC32, which botocore
    then sends as a header instead of wrapping the body in ``aws-chunked`` encoding with a
    trailing checksum computed while streaming (one request, less work on both sides).
    Larger: s3transfer's multipart upload, parts sent in parallel, each with the checksum
    botocore computes.  ``extra``: more ``put_object`` arguments (``ContentType``, SSE-KMS,
    ``ExpectedBucketOwner``)."""
    if isinstance(body, bytes):
        if len(body) > SINGLE_PUT_BYTES:
            s3.upload_fileobj(io.BytesIO(body), bucket, key, ExtraArgs=extra or None)
        else:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ChecksumCRC32=crc32_base64(zlib.crc32(body)),
                **extra,
            )
        return
    if isinstance(body, (str, os.PathLike)):
        if os.path.getsize(body) > SINGLE_PUT_BYTES:  # (s3transfer reads each part itself)
            s3.upload_file(os.fspath(body), bucket, key, ExtraArgs=extra or None)
            return
        with open(body, "rb") as file:
            upload(s3, file, bucket, key, **extra)
        return
    start = body.tell()
    size = body.seek(0, io.SEEK_END) - start
    body.seek(start)
    if size > SINGLE_PUT_BYTES:
        s3.upload_fileobj(body, bucket, key, ExtraArgs=extra or None)
        return
    crc = 0
    while chunk := body.read(_CRC_READ_BYTES):
        crc = zlib.crc32(chunk, crc)
    body.seek(start)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumCRC32=crc32_base64(crc), **extra)


def upload_pieces(
    s3: Any, pieces: Iterable[bytes | bytearray], bucket: str, key: str, **extra: Any
) -> int:
    """Upload the bytes of ``pieces``, one after the other, as one object, and return its
    size.  Up to ``SINGLE_PUT_BYTES`` they are joined and sent as :func:`upload` sends
    bytes; past that, the rest is read from ``pieces`` only as s3transfer's multipart
    upload sends its parts, so a file of any size holds that much and s3transfer's parts
    in flight, not the whole file.  An exception raised by ``pieces`` aborts the upload."""
    source = iter(pieces)
    head, more = gather_pieces(source)
    if not more:
        body = b"".join(head)
        upload(s3, body, bucket, key, **extra)
        return len(body)
    stream = PieceReader(drained(head, source))
    s3.upload_fileobj(stream, bucket, key, ExtraArgs=extra or None)
    return stream.size


def gather_pieces(
    pieces: Iterator[bytes | bytearray], limit: int | None = None
) -> tuple[deque[bytes | bytearray], bool]:
    """Pieces taken from ``pieces`` until they hold more than ``limit`` bytes (by default
    ``SINGLE_PUT_BYTES``), and whether they did (False: ``pieces`` ended first, and these
    are all of them)."""
    limit = SINGLE_PUT_BYTES if limit is None else limit
    head: deque[bytes | bytearray] = deque()
    size = 0
    for piece in pieces:
        head.append(piece)
        size += len(piece)
        if size > limit:
            return head, True
    return head, False


def drained(
    head: deque[bytes | bytearray], rest: Iterator[bytes | bytearray]
) -> Iterator[bytes | bytearray]:
    """``head``'s pieces, each let go of once taken, then ``rest``'s."""
    while head:
        yield head.popleft()
    yield from rest


class PieceReader:
    """A read-only, non-seekable binary file over pieces of bytes: ``read(n)`` returns
    ``n`` bytes until the last read (s3transfer sends each read as a part, and S3 refuses
    parts under 5 MiB but the last)."""

    def __init__(self, pieces: Iterator[bytes | bytearray]) -> None:
        self._pieces = pieces
        self._rest = memoryview(b"")
        self.size = 0
        """Bytes read so far."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int = -1) -> bytes:
        out = bytearray()
        while amount < 0 or len(out) < amount:
            if not self._rest:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._rest = memoryview(piece)
                continue
            take = self._rest if amount < 0 else self._rest[: amount - len(out)]
            out += take
            self._rest = self._rest[len(take) :]
        self.size += len(out)
        return bytes(out)


def crc32_base64(crc: int) -> str:
    """S3's ``x-amz-checksum-crc32`` value for a CRC32: big-endian, base64-encoded."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")
