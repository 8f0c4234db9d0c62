"""Uploads: one request with the body's CRC32 up to a size, parallel parts above it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.httpchecksum import Crc32Checksum

from bedrock_batch_nb import aws as aws_module
from bedrock_batch_nb.local import LocalBedrock


def recording_client(aws: LocalBedrock) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """A run's S3 client and the (operation, headers) of every request it sends."""
    s3 = aws_module.Clients.create().s3
    sent: list[tuple[str, dict[str, Any]]] = []
    s3.meta.events.register(
        "before-send.s3.*",
        lambda request, event_name, **_: sent.append(
            (event_name.rsplit(".", 1)[-1], dict(request.headers))
        ),
    )
    return s3, sent


def upload_as(kind: str, s3: Any, bucket: str, key: str, data: bytes, tmp: Path) -> None:
    """``aws.upload`` given ``data`` as bytes, as a file's path, or as an open file."""
    path = tmp / "results.parquet"
    path.write_bytes(data)
    if kind == "file":
        with open(path, "rb") as file:
            aws_module.upload(s3, file, bucket, key, ContentType="application/x-test")
    else:
        body = data if kind == "bytes" else path
        aws_module.upload(s3, body, bucket, key, ContentType="application/x-test")


@pytest.mark.parametrize("kind", ["bytes", "path", "file"])
def test_small_uploads_are_one_put_carrying_their_crc32(
    aws: LocalBedrock, tmp_path: Path, kind: str
) -> None:
    data = os.urandom(300_000) + b"\n"
    s3, sent = recording_client(aws)
    upload_as(kind, s3, aws.bucket, "k", data, tmp_path)
    assert [op for op, _ in sent] == ["PutObject"]
    expected = Crc32Checksum()
    expected.update(data)
    assert sent[0][1]["x-amz-checksum-crc32"] == expected.b64digest().encode()
    # checked by its CRC32, not hashed again with SHA-256 for the signature
    assert sent[0][1]["X-Amz-Content-SHA256"] == b"UNSIGNED-PAYLOAD"
    got = s3.get_object(Bucket=aws.bucket, Key="k")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-test"


@pytest.mark.parametrize("kind", ["bytes", "path", "file"])
def test_large_uploads_go_in_parallel_parts(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    monkeypatch.setattr(aws_module, "SINGLE_PUT_BYTES", 1 << 20)
    data = os.urandom(9 << 20)  # over s3transfer's 8 MiB multipart threshold too
    s3, sent = recording_client(aws)
    upload_as(kind, s3, aws.bucket, "big", data, tmp_path)
    operations = [op for op, _ in sent]
    assert operations.count("UploadPart") == 2
    for op, headers in sent:
        if op == "UploadPart":
            assert "x-amz-checksum-crc32" in headers
            assert headers["X-Amz-Content-SHA256"] == b"UNSIGNED-PAYLOAD"
    assert operations[0] == "CreateMultipartUpload"
    assert operations[-1] == "CompleteMultipartUpload"
    got = s3.get_object(Bucket=aws.bucket, Key="big")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-test"


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-20T18:54:15.563Z",  # Bedrock's and S3's own form
        "2024-05-20T18:54:15Z",
        "2024-05-20T18:54:15.5631234Z",  # more digits than fromisoformat reads on 3.10
        "2024-05-20T18:54:15+02:00",
        "2024-05-20T18:54:15",  # no time zone
        "Mon, 20 May 2024 18:54:15 GMT",  # HTTP headers' form
        "1716231255",
        1716231255,
    ],
)
def test_timestamps_are_read_as_botocore_reads_them(value: object) -> None:
    import botocore.utils

    ours, botocores = aws_module.parse_timestamp(value), botocore.utils.parse_timestamp(value)
    assert ours == botocores
    assert (ours.tzinfo is None) == (botocores.tzinfo is None)


def test_a_runs_clients_read_response_timestamps_with_the_fast_parser(aws: LocalBedrock) -> None:
    """Through HTTP: the run's clients give the same instants as a plain boto3 client."""
    import datetime as dt

    import boto3

    clients = aws_module.Clients.create()
    clients.s3.put_object(Bucket=aws.bucket, Key="stamp.txt", Body=b"x")
    ours = clients.s3.list_objects_v2(Bucket=aws.bucket, Prefix="stamp")["Contents"][0]
    plain = boto3.client("s3").list_objects_v2(Bucket=aws.bucket, Prefix="stamp")["Contents"][0]
    assert ours["LastModified"] == plain["LastModified"]
    assert ours["LastModified"].tzinfo == dt.timezone.utc  # read by fromisoformat


def test_the_clients_of_later_runs_parse_no_botocore_data_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each run has a botocore session of its own; the service models and endpoint rules
    they need are read from botocore's data files once in the process, not once a run."""
    import botocore.loaders

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws_module.Clients.create()  # whatever an earlier test left unread is read here
    loaded: list[str] = []
    real_load = botocore.loaders.JSONFileLoader.load_file

    def counted(self: Any, file_path: str) -> Any:
        loaded.append(file_path)
        return real_load(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", counted)
    clients = aws_module.Clients.create()
    assert loaded == []
    assert clients.s3.meta.service_model.service_name == "s3"
    assert clients.bedrock.meta.service_model.service_name == "bedrock"


def pieces_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_pieces_up_to_the_single_put_size_are_one_put_carrying_their_crc32(
    aws: LocalBedrock,
) -> None:
    data = os.urandom(300_000)
    s3, sent = recording_client(aws)
    size = aws_module.upload_pieces(
        s3, iter(pieces_of(data, 7_000)), aws.bucket, "k", ContentType="application/jsonl"
    )
    assert size == len(data)
    assert [op for op, _ in sent] == ["PutObject"]
    expected = Crc32Checksum()
    expected.update(data)
    assert sent[0][1]["x-amz-checksum-crc32"] == expected.b64digest().encode()
    got = s3.get_object(Bucket=aws.bucket, Key="k")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/jsonl"


def test_pieces_over_the_single_put_size_are_sent_in_parts_as_they_come(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is never gathered whole: the pieces after the first part's bytes are not
    even made until that part has been sent."""
    monkeypatch.setattr(aws_module, "SINGLE_PUT_BYTES", 1 << 20)
    data = os.urandom(20 << 20)
    s3, sent = recording_client(aws)
    first_part_sent = threading.Event()
    s3.meta.events.register("before-send.s3.UploadPart", lambda **_: first_part_sent.set())

    def pieces() -> Iterator[bytes]:
        for i, piece in enumerate(pieces_of(data, 1 << 20)):
            if i == 10:  # past s3transfer's first 8 MiB part
                assert first_part_sent.wait(30), "no part sent before the file was made"
            yield piece

    size = aws_module.upload_pieces(s3, pieces(), aws.bucket, "big", ContentType="text/x")
    assert size == len(data)
    operations = [op for op, _ in sent]
    assert operations[0] == "CreateMultipartUpload"
    assert operations.count("UploadPart") == 3  # 8 + 8 + 4 MiB
    assert operations[-1] == "CompleteMultipartUpload"
    for op, headers in sent:
        if op == "UploadPart":
            assert "x-amz-checksum-crc32" in headers
    got = s3.get_object(Bucket=aws.bucket, Key="big")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/x"


def test_a_failure_while_the_pieces_are_made_aborts_their_upload(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_module, "SINGLE_PUT_BYTES", 1 << 20)
    s3, _ = recording_client(aws)

    def pieces() -> Iterator[bytes]:
        for _ in range(12):
            yield os.urandom(1 << 20)
        raise ValueError("the rows could not be read")

    with pytest.raises(ValueError, match="could not be read"):
        aws_module.upload_pieces(s3, pieces(), aws.bucket, "broken")
    assert "Contents" not in s3.list_objects_v2(Bucket=aws.bucket, Prefix="broken")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=aws.bucket)
