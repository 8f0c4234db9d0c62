"""Staging's input files: the whole-file builder gives the same bytes as one line per record."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from bedrock_batch_nb import staging
from bedrock_batch_nb.local import LocalBedrock
from bedrock_batch_nb.models import InferenceParams, resolve_adapter
from bedrock_batch_nb.prompts import PromptTemplate
from bedrock_batch_nb.staging import RecordBuilder, jsonl_body, position_of

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
ORDINARY = 'ab "\\\n\r\t é✓😀{}'  # every character JSON escapes in ordinary text, and more
CONTROL = "\x00\x01\x08\x0c\x1f"


def random_texts(rng: random.Random, alphabet: str, n: int) -> list[str]:
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]


@pytest.fixture
def builder() -> RecordBuilder:
    return RecordBuilder(
        resolve_adapter(CLAUDE), system='Answer "briefly".\n', params=InferenceParams()
    )


@pytest.mark.parametrize("piece_bytes", [1, 50, 1 << 18])  # escaped this much at a time
def test_whole_file_escaping_matches_json_for_ordinary_text(
    builder: RecordBuilder, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    monkeypatch.setattr(staging, "_PIECE_BYTES", piece_bytes)

    def per_record(*args: object) -> bytes:
        raise AssertionError("ordinary text must not need the per-record path")

    monkeypatch.setattr(RecordBuilder, "_body_per_record", staticmethod(per_record))
    rng = random.Random(7)
    for _ in range(200):
        texts = random_texts(rng, ORDINARY, rng.randint(1, 30))
        positions = rng.sample(range(10**9), len(texts))
        body = builder.body(texts, positions)
        assert body == jsonl_body(builder.lines(texts, positions))
        assert builder.body(pa.array(texts, pa.string()), positions) == body
        records = [json.loads(line) for line in body.decode().splitlines()]
        assert [position_of(r["recordId"]) for r in records] == positions
        assert [r["modelInput"]["messages"][0]["content"][0]["text"] for r in records] == texts


@pytest.mark.parametrize("piece_bytes", [1, 50, 1 << 18])
def test_texts_with_other_control_characters_take_the_per_record_path(
    builder: RecordBuilder, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    monkeypatch.setattr(staging, "_PIECE_BYTES", piece_bytes)
    rng = random.Random(11)
    for _ in range(100):
        texts = random_texts(rng, ORDINARY + CONTROL, rng.randint(1, 20))
        positions = list(range(5, 5 + len(texts)))
        assert builder.body(texts, positions) == jsonl_body(builder.lines(texts, positions))
    assert builder.body([], []) == b""


@pytest.mark.parametrize(
    "template",
    ["{a}", "Q: {a}", "{a} (end)", "{a}\n\nExplain: {b}", "{b}{a}{b}", 'Say "{a}" then {b}.'],
)
@pytest.mark.parametrize("alphabet", [ORDINARY, ORDINARY + CONTROL])
def test_a_templates_pieces_give_the_file_its_rendered_prompts_give(
    builder: RecordBuilder, monkeypatch: pytest.MonkeyPatch, template: str, alphabet: str
) -> None:
    """Staging joins a template's literals and columns itself, each record's id in front:
    the same bytes as building from the prompts rendered first (control characters in a
    value send the batch down the per-record path, still the same bytes)."""
    monkeypatch.setattr(staging, "_PIECE_BYTES", 64)
    if alphabet == ORDINARY:

        def per_record(*args: object) -> bytes:
            raise AssertionError("ordinary text must not need the per-record path")

        monkeypatch.setattr(RecordBuilder, "_body_per_record", staticmethod(per_record))
    prompt = PromptTemplate(template)
    rng = random.Random(len(template) + len(alphabet))
    for _ in range(30):
        n = rng.randint(1, 25)
        rows = pa.table(
            {
                "a": random_texts(rng, alphabet, n),
                "b": pa.array(random_texts(rng, alphabet, n), pa.large_string()),
            }
        )
        positions = rng.sample(range(10**9), n)
        parts = staging.TextParts(tuple(prompt.arrow_parts(rows)))
        assert len(parts) == n
        prompts = prompt.render_frame(rows.to_pandas()).tolist()
        assert parts.joined().to_pylist() == prompts
        body = builder.body(parts, positions)
        assert body == jsonl_body(builder.lines(prompts, positions))
        records = [json.loads(line) for line in body.decode().splitlines()]
        assert [r["modelInput"]["messages"][0]["content"][0]["text"] for r in records] == prompts


def test_staged_files_carry_the_crc32_s3_checks(aws: LocalBedrock) -> None:
    """The checksum header botocore would compute while streaming is sent up front."""
    from botocore.httpchecksum import Crc32Checksum

    s3 = aws.s3_client()
    sent: dict[str, bytes] = {}
    s3.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.update(request.headers)
    )
    body = jsonl_body(f'{{"recordId":"R{i:010d}","modelInput":{{}}}}' for i in range(1000))
    staging.put_jsonl(s3, aws.bucket, "input/part-00001.jsonl", body)
    expected = Crc32Checksum()
    expected.update(body)
    assert sent["x-amz-checksum-crc32"] == expected.b64digest().encode()
    got = s3.get_object(Bucket=aws.bucket, Key="input/part-00001.jsonl")["Body"].read()
    assert got == body
