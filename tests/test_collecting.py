"""Collecting: output lines joined back to rows, whatever their order or state."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bedrock_batch_nb import collecting
from bedrock_batch_nb.collecting import OutputStats, Results, error_message, write_parquet
from bedrock_batch_nb.models import resolve_adapter
from bedrock_batch_nb.staging import record_id

CLAUDE = resolve_adapter("anthropic.claude-3-haiku-20240307-v1:0")
TITAN = resolve_adapter("amazon.titan-embed-text-v2:0")


def claude_line(pos: int, text: str, *, tokens: tuple[int, int] = (5, 7)) -> str:
    return json.dumps(
        {
            "recordId": record_id(pos),
            "modelInput": {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "modelOutput": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
            },
        },
        ensure_ascii=False,
    )


def error_record(pos: int, message: str = "Malformed input request") -> dict[str, Any]:
    return {
        "recordId": record_id(pos),
        "modelInput": {},
        "error": {"errorCode": 400, "errorMessage": message},
    }


def error_line(pos: int, message: str = "Malformed input request") -> str:
    return json.dumps(error_record(pos, message))


@pytest.fixture
def rows() -> pd.DataFrame:
    return pd.DataFrame({"topic": [f"t{i}" for i in range(6)]}, index=list("abcdef"))


def test_out_of_order_lines_join_on_record_id(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    lines = [claude_line(i, f"answer {i}", tokens=(i, 2 * i)) for i in range(6)]
    random.Random(3).shuffle(lines)
    stats = results.add_lines(lines)
    out = results.to_frame(rows)
    assert stats.successes == 6 and stats.errors == 0
    assert list(out.index) == list("abcdef")
    assert list(out.columns) == ["topic", "response", "error", "input_tokens", "output_tokens"]
    assert list(out["response"]) == [f"answer {i}" for i in range(6)]
    assert out["error"].isna().all()
    assert list(out["input_tokens"]) == [0, 1, 2, 3, 4, 5]
    assert list(out["output_tokens"]) == [0, 2, 4, 6, 8, 10]


def test_unicode_escapes_and_blank_lines(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    tricky = 'naïve ✓ "quoted" \\ back\nslash \u2028 line-sep 🐍'
    lines = ["", "   ", claude_line(0, tricky), "\n", json.dumps({"x": 1}), claude_line(1, "{}")]
    stats = results.add_lines([line.encode("utf-8") for line in lines])
    out = results.to_frame(rows)
    assert out["response"].iloc[0] == tricky
    assert out["response"].iloc[1] == "{}"
    assert stats.lines == 3 and stats.successes == 2 and stats.malformed == 1


def test_error_lines_keep_code_and_message_and_do_not_touch_others(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    results.add_lines(
        [claude_line(0, "ok"), error_line(1, "content filtered"), claude_line(2, "x")]
    )
    out = results.to_frame(rows)
    assert out["error"].iloc[1] == "400: content filtered"
    assert out["response"].iloc[1] is None
    assert pd.isna(out["input_tokens"].iloc[1])
    assert out["response"].iloc[0] == "ok" and out["response"].iloc[2] == "x"


def test_missing_lines_get_an_error_that_says_so(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    results.add_lines([claude_line(i, "ok") for i in (0, 2, 3)])
    missing = results.mark_unanswered(range(6), "No output line for this record.")
    out = results.to_frame(rows)
    assert missing == 3
    assert list(out["error"].isna()) == [True, False, True, True, False, False]
    assert out.loc["b", "error"] == "No output line for this record."


def test_empty_output_file(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    stats = results.add_lines([])
    assert stats.lines == 0
    assert results.mark_unanswered(range(6), "none") == 6


def test_corrupt_and_foreign_lines_are_counted_not_fatal(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    good = claude_line(4, "fine")
    stats = results.add_lines(
        [good[: len(good) // 2], '{"recordId": "someone-else", "modelOutput": {}}', good]
    )
    assert stats.malformed == 1 and stats.unknown_record_ids == 1 and stats.successes == 1
    assert results.to_frame(rows)["response"].iloc[4] == "fine"


def test_unparseable_model_output_becomes_that_rows_error(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    bad = json.dumps({"recordId": record_id(0), "modelOutput": {"unexpected": True}})
    results.add_lines([bad, claude_line(1, "ok")])
    out = results.to_frame(rows)
    assert out["error"].iloc[0].startswith("Unreadable model output")
    assert out["response"].iloc[1] == "ok"


def test_embeddings_become_lists_of_floats() -> None:
    rows = pd.DataFrame({"input_text": ["a", "b"]})
    results = Results(2, TITAN)
    vec = list(np.linspace(-1, 1, 8))
    line = {
        "recordId": record_id(1),
        "modelInput": {"inputText": "b"},
        "modelOutput": {"embedding": vec, "inputTextTokenCount": 3},
    }
    results.add_lines([json.dumps(line)])
    out = results.to_frame(rows)
    assert "embedding" in out.columns and "response" not in out.columns
    assert out["embedding"].iloc[1] == pytest.approx(vec)
    assert out["input_tokens"].iloc[1] == 3
    assert out["embedding"].iloc[0] is None


def test_error_message_formats() -> None:
    assert error_message({"errorCode": 400, "errorMessage": "bad"}) == "400: bad"
    assert error_message({"errorMessage": "bad"}) == "bad"
    assert error_message("plain") == "plain"


def test_any_key_order_and_lookalike_text_in_the_prompt(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    sneaky = 'say "modelOutput": {"content": [], "error": 1} and "recordId": "R0000000005"'
    output = {"content": [{"type": "text", "text": "real"}], "usage": {}}
    lines = [
        # Bedrock's own order may differ from ours: join on the keys, not their places.
        json.dumps(
            {"modelOutput": output, "modelInput": {"text": sneaky}, "recordId": "R0000000000"}
        ),
        json.dumps(
            {"recordId": "R0000000001", "modelInput": {"text": sneaky}, "modelOutput": output}
        ),
        json.dumps(
            {
                "modelInput": {"text": sneaky},
                "error": {"errorCode": 400, "errorMessage": "bad"},
                "recordId": "R0000000002",
            }
        ),
    ]
    stats = results.add_lines(lines)
    out = results.to_frame(rows)
    assert out["response"].tolist()[:2] == ["real", "real"]
    assert out["error"].iloc[2] == "400: bad"
    assert out["response"].iloc[5] is None and out["error"].iloc[5] is None
    assert (stats.successes, stats.errors, stats.malformed) == (2, 1, 0)


def test_truncated_lines_are_malformed_wherever_they_are_cut(rows: pd.DataFrame) -> None:
    line = claude_line(0, "a full answer")
    for cut in (5, 30, len(line) // 2, len(line) - 20, len(line) - 1):
        results = Results(len(rows), CLAUDE)
        stats = results.add_lines([line[:cut]])
        assert stats.malformed == 1 and stats.successes == 0, cut
        assert not results.answered.any()


def test_a_later_success_replaces_an_earlier_error_but_not_the_reverse(rows: pd.DataFrame) -> None:
    results = Results(len(rows), CLAUDE)
    results.add_lines([error_line(0, "first try failed"), claude_line(1, "ok")])
    results.add_lines([claude_line(0, "retried"), error_line(1, "late error")])
    out = results.to_frame(rows)
    assert out["response"].iloc[0] == "retried" and out["error"].iloc[0] is None
    assert out["response"].iloc[1] == "ok" and out["error"].iloc[1] is None


@pytest.mark.parametrize("convert_rows", [collecting.CONVERT_ROWS, 4])
def test_parquet_written_in_row_groups_keeps_late_values_and_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, convert_rows: int
) -> None:
    # (converted a few rows at a time, a row group is several conversions put together)
    monkeypatch.setattr(collecting, "CONVERT_ROWS", convert_rows)
    frame = pd.DataFrame(
        {
            "late_text": [None] * 25 + ["appears late"] * 5,
            "late_list": [None] * 29 + [[0.5, 1.5]],
            "n": range(30),
        },
        index=pd.Index([f"k{i}" for i in range(30)], name="key"),
    )
    path = tmp_path / "out.parquet"
    write_parquet(frame, path, batch_rows=10)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    back = pd.read_parquet(path)
    assert back.index.tolist() == frame.index.tolist()
    assert back["late_text"].iloc[-1] == "appears late" and back["late_text"].isna().sum() == 25
    assert list(back["late_list"].iloc[-1]) == [0.5, 1.5]
    assert back["n"].tolist() == list(range(30))


# ---- whole blocks read with Arrow give what line-by-line reading gives ------------------

NOVA = resolve_adapter("amazon.nova-lite-v1:0")
CONVERSE = resolve_adapter("anthropic.claude-3-haiku-20240307-v1:0", invocation_type="Converse")


def messages_line(pos: int, text: str) -> str:
    return json.dumps(
        {
            "recordId": record_id(pos),
            "modelInput": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            "modelOutput": {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": pos, "outputTokens": 2 * pos, "totalTokens": 3 * pos},
            },
        }
    )


def embedding_vector(pos: int, text: str) -> list[float]:
    """Numbers at full precision (17 digits), a few extreme ones among them."""
    rng = np.random.default_rng(pos * 7919 + len(text))
    vector = (rng.standard_normal(16) * 10.0 ** rng.integers(-12, 12, 16)).tolist()
    return [*vector, -0.0, 5e-324, 1.7976931348623157e308, 3]


def embedding_line(pos: int, text: str) -> str:
    return json.dumps(
        {
            "recordId": record_id(pos),
            "modelInput": {"inputText": text, "dimensions": 256, "normalize": True},
            "modelOutput": {"embedding": embedding_vector(pos, text), "inputTextTokenCount": pos},
        }
    )


def embedding_variants() -> list[str]:
    rid = record_id
    outputs: list[Any] = [
        {"embedding": [], "inputTextTokenCount": 1},
        {"embedding": [1, 2.5, -3]},
        {"embedding": [True, 1.0]},
        {"embedding": [None, 1.0]},
        {"embedding": None, "embeddingsByType": {"float": [0.5, 0.25]}},
        {"embeddingsByType": {"float": [0.5, 0.25]}, "inputTextTokenCount": 4},
        {"embedding": "not a list"},
        {"embedding": [[1.0]]},
        {"embedding": [0.1, 0.2], "inputTextTokenCount": 2.0},
        {"embedding": [0.1, 0.2], "inputTextTokenCount": True},
        {"embedding": [0.1, 0.2], "inputTextTokenCount": "7"},
        {"embedding": [0.1], "embeddingsByType": {"float": [0.9], "binary": [1]}},
    ]
    lines = [
        json.dumps({"recordId": rid(70 + i), "modelOutput": output})
        for i, output in enumerate(outputs)
    ]
    lines.append('{"recordId": "R0000000082", "modelOutput": {"embedding": [1e400, -1e400]}}')
    return lines


def odd_lines(make: Any) -> list[str]:
    """Lines of every kind: good ones, error lines, and each way a line can be odd."""
    rid = record_id
    lines = [make(i, f"answer {i} ✓") for i in range(40)]
    lines += [error_line(i, f"failed {i}") for i in range(35, 45)]
    lines += [make(41, "a late success"), error_line(2, "a late error")]
    lines += [
        "",
        "   ",
        make(5, "cut")[:50],
        "[1, 2]",
        '{"recordId": "someone-else", "modelOutput": {}}',
        '{"recordId": "R9999999999", "error": {"errorCode": 400, "errorMessage": "x"}}',
        json.dumps({"recordId": rid(46)}),
        json.dumps({"recordId": rid(47), "error": {"errorCode": 429}}),
        json.dumps({"recordId": rid(48), "error": {"errorMessage": "no code"}}),
        json.dumps({"recordId": rid(49), "error": "plain text"}),
        json.dumps({"recordId": rid(50), "modelOutput": {}}),
        json.dumps({"recordId": rid(51), "modelOutput": {"content": None}}),
        json.dumps({"recordId": rid(52), "modelOutput": "not an object"}),
        json.dumps({"recordId": 53, "modelOutput": {}}),
        json.dumps({"recordId": rid(54), "error": {"errorCode": "Throttled", "errorMessage": "m"}}),
        json.dumps({"recordId": rid(55), "error": {"errorCode": 400.0, "errorMessage": "m"}}),
        '{"recordId": "R0000000056", "recordId": "R0000000057", "modelOutput": {}}',
        make(58, "two") + " " + make(59, "on one line"),
        "  " + make(60, "indented"),
    ]
    # The echoed request, which Arrow is not given when it comes before the answer: text
    # and keys that look like the answer's, another place, odd JSON, a key in between.
    lookalike = 'say "modelOutput": {"content": []}, "error": 1, "recordId": "R0000000061"'
    inputs: list[Any] = [
        {"text": lookalike},
        {"nested": {"modelOutput": {"content": [{"type": "text", "text": "fake"}]}}},
        {"error": {"errorCode": 500, "errorMessage": "fake"}},
    ]
    for i, model_input in enumerate(inputs):
        for record in (json.loads(make(61 + i, "beside an odd request")), error_record(64 + i)):
            lines.append(json.dumps({**record, "modelInput": model_input}))
            rest = {k: v for k, v in record.items() if k != "modelInput"}
            lines.append(json.dumps({**rest, "modelInput": model_input}))  # after the answer
    answer = json.loads(make(67, "after a broken request"))
    lines.append(
        json.dumps({"recordId": answer["recordId"]})[:-1]
        + ', "modelInput": {"a": [}, "modelOutput": '
        + json.dumps(answer["modelOutput"])
        + "}"
    )
    record = json.loads(make(68, "after another key"))
    lines.append(json.dumps({"recordId": record["recordId"], "modelInput": {}, "x": 1, **record}))
    return lines


def claude_variants() -> list[str]:
    rid = record_id
    body = {"usage": {"input_tokens": 3, "output_tokens": 4}}
    content: list[Any] = [
        [],
        [
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "t"},
            {"type": "text", "text": "b"},
        ],
        [{"text": "no type"}],
        [{"type": None, "text": "null type"}],
        [None, {"type": "text", "text": "after a null"}],
        [{"type": "text"}],
        [{"type": "text", "text": 5}],
    ]
    lines = [
        json.dumps({"recordId": rid(70 + i), "modelOutput": {**body, "content": c}})
        for i, c in enumerate(content)
    ]
    lines += [
        json.dumps({"recordId": rid(80), "modelOutput": {"content": [], "usage": None}}),
        json.dumps(
            {"recordId": rid(81), "modelOutput": {"content": [], "usage": {"input_tokens": 2.0}}}
        ),
        json.dumps(
            {"recordId": rid(82), "modelOutput": {"content": [], "usage": {"input_tokens": True}}}
        ),
        json.dumps(
            {"recordId": rid(83), "modelOutput": {"content": [], "usage": {"output_tokens": "7"}}}
        ),
        # a lone surrogate: Python decodes it, Arrow does not
        '{"recordId": "R0000000084", "modelOutput": {"content": [{"text": "\\ud83d"}]}}',
    ]
    return lines


def line_by_line(results: Results, lines: list[Any]) -> OutputStats:
    stats = OutputStats()
    for line in lines:
        results.add_line(line, stats)
    return stats


def same(a: Results, b: Results, rows: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.to_frame(rows), b.to_frame(rows))
    assert a.answered.tolist() == b.answered.tolist()
    for x, y in zip(a.values, b.values, strict=True):  # embeddings: the same bits
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x.dtype == y.dtype == np.float64 and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("block_bytes", [300, 4096, 1 << 20])
@pytest.mark.parametrize(
    ("adapter", "make", "extra"),
    [
        (CLAUDE, claude_line, claude_variants),
        (NOVA, messages_line, list),
        (CONVERSE, messages_line, list),
        (TITAN, embedding_line, embedding_variants),
    ],
    ids=["claude", "nova", "converse", "titan"],
)
@pytest.mark.parametrize("form", ["str", "bytes", "file"])
def test_blocks_read_as_line_by_line_would(
    monkeypatch: pytest.MonkeyPatch,
    adapter: Any,
    make: Any,
    extra: Any,
    form: str,
    block_bytes: int,
) -> None:
    monkeypatch.setattr(collecting, "BLOCK_BYTES", block_bytes)
    rows = pd.DataFrame({"n": range(90)})
    for seed in range(3):
        lines = odd_lines(make) + extra()
        random.Random(seed).shuffle(lines)
        expected = Results(len(rows), adapter)
        expected_stats = line_by_line(expected, lines)
        got = Results(len(rows), adapter)
        if form == "str":
            stats = got.add_lines(lines)
        elif form == "bytes":
            stats = got.add_lines([line.encode("utf-8") for line in lines])
        else:
            stats = got.add_lines(io.BytesIO("\n".join(lines).encode("utf-8")))
        assert stats == expected_stats
        same(got, expected, rows)


def test_a_clean_file_is_read_without_the_line_by_line_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [claude_line(i, f"answer {i}", tokens=(i, i + 1)) for i in range(300)]
    lines[7] = error_line(7, "content filtered")
    random.Random(1).shuffle(lines)
    calls: list[Any] = []
    monkeypatch.setattr(Results, "add_line", lambda self, raw, stats: calls.append(raw))
    results = Results(300, CLAUDE)
    stats = results.add_lines(io.BytesIO(("\n".join(lines) + "\n").encode()))
    assert calls == []
    assert (stats.lines, stats.successes, stats.errors, stats.malformed) == (300, 299, 1, 0)
    out = results.to_frame(pd.DataFrame({"n": range(300)}))
    assert out["error"].iloc[7] == "400: content filtered" and out["response"].iloc[7] is None
    assert out["response"].iloc[8] == "answer 8" and out["output_tokens"].iloc[8] == 9


def test_a_clean_embedding_file_is_read_by_arrow_to_the_bit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = [embedding_line(i, f"text {i}") for i in range(300)]
    lines[9] = error_line(9, "too long")
    random.Random(2).shuffle(lines)
    body = ("\n".join(lines) + "\n").encode()
    calls: list[Any] = []
    monkeypatch.setattr(Results, "add_line", lambda self, raw, stats: calls.append(raw))
    for spill in (None, str(tmp_path / "answers.parquet")):
        results = Results(300, TITAN, spill_path=spill)
        stats = results.add_lines(io.BytesIO(body))
        assert calls == []
        assert (stats.successes, stats.errors, stats.malformed) == (299, 1, 0)
        out = results.to_frame(pd.DataFrame({"n": range(300)}))
        for pos in (0, 8, 10, 299):
            got = out["embedding"].iloc[pos]
            assert isinstance(got, np.ndarray) and got.flags.writeable
            expected = np.array(embedding_vector(pos, f"text {pos}"), dtype=np.float64)
            assert got.tobytes() == expected.tobytes()
        assert out["input_tokens"].iloc[8] == 8 and pd.isna(out["output_tokens"].iloc[8])
        assert out["error"].iloc[9] == "400: too long" and out["embedding"].iloc[9] is None


def test_the_echoed_requests_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line's echoed modelInput (most of its bytes) is cut out before Arrow parses
    the block; the answers and errors are read all the same."""
    lines = [claude_line(i, f"answer {i}") for i in range(200)]
    lines[3] = error_line(3, "content filtered")
    parsed: list[bytes] = []
    read_json = collecting.pj.read_json

    def recording(source: Any, **options: Any) -> Any:
        parsed.append(source.read())
        source.seek(0)
        return read_json(source, **options)

    monkeypatch.setattr(collecting.pj, "read_json", recording)
    results = Results(200, CLAUDE)
    stats = results.add_lines(io.BytesIO(("\n".join(lines) + "\n").encode()))
    assert (stats.successes, stats.errors) == (199, 1)
    assert parsed and not any(b"modelInput" in body or b"messages" in body for body in parsed)
    out = results.to_frame(pd.DataFrame({"n": range(200)}))
    assert out["response"].iloc[150] == "answer 150" and out["input_tokens"].iloc[150] == 5
    assert out["error"].iloc[3] == "400: content filtered"


def test_one_damaged_line_in_a_block_takes_no_other_row_down() -> None:
    lines = [claude_line(i, f"answer {i}") for i in range(50)]
    lines[20] = lines[20][:100]
    results = Results(50, CLAUDE)
    stats = results.add_lines(io.BytesIO("\n".join(lines).encode()))
    assert (stats.successes, stats.malformed) == (49, 1)
    assert results.unanswered().tolist() == [20]


def test_invalid_utf8_is_read_as_replacement_characters() -> None:
    line = claude_line(0, "caf\u00e9").encode().replace("é".encode(), b"\xff")
    results = Results(2, CLAUDE)
    stats = results.add_lines(io.BytesIO(line + b"\n" + claude_line(1, "ok").encode()))
    assert stats.successes == 2
    assert results.to_frame(pd.DataFrame({"n": [0, 1]}))["response"].tolist() == ["caf\ufffd", "ok"]


def test_our_record_ids_are_read_as_position_of_reads_them() -> None:
    rids = [record_id(p) for p in (0, 1, 99, 12345, 9_999_999_999)]
    rids += [
        "R000000001",
        "R00000000012",
        "X0000000001",
        "R00000000a1",
        "r0000000001",
        "R" + "\u0660" * 9 + "\u0661",
    ]
    for rid in rids:
        line = json.dumps({"recordId": rid, "error": {"errorCode": 1, "errorMessage": "m"}})
        expected = Results(20_000, CLAUDE)
        expected_stats = line_by_line(expected, [line])
        got = Results(20_000, CLAUDE)
        assert got.add_lines(io.BytesIO(line.encode())) == expected_stats, rid
        assert got.errors.tolist() == expected.errors.tolist(), rid


def test_a_text_file_and_a_lone_surrogate_are_read_line_by_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collecting, "BLOCK_BYTES", 500)
    lines = [claude_line(i, f"answer {i}") for i in range(6)]
    lines[2] = claude_line(2, "lone \ud83d surrogate")
    results = Results(6, CLAUDE)
    stats = results.add_lines(io.StringIO("\n".join(lines)))
    assert stats.successes == 6
    assert results.to_frame(pd.DataFrame({"n": range(6)}))["response"].iloc[2].startswith("lone")
    results = Results(6, CLAUDE)
    assert results.add_lines(lines).successes == 6


def test_parquet_dictionary_only_where_values_repeat(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "unique_text": [f"response number {i} " * 5 for i in range(40)],
            "label": ["yes", "no"] * 20,
            "embedding": [[float(i), 0.5] for i in range(40)],
        }
    )
    path = tmp_path / "out.parquet"
    write_parquet(frame, path, batch_rows=15)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 3
    encodings = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings
        for i in range(meta.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["label"]
    assert "RLE_DICTIONARY" not in encodings["unique_text"]
    back = pd.read_parquet(path)
    assert back["unique_text"].tolist() == frame["unique_text"].tolist()
    assert back["label"].tolist() == frame["label"].tolist()
    assert [list(v) for v in back["embedding"]] == frame["embedding"].tolist()


def test_spilled_answers_read_back_by_range_with_the_last_write_winning(tmp_path: Path) -> None:
    import pyarrow as pa

    from bedrock_batch_nb.collecting import SpilledValues

    rng = random.Random(5)
    expected: list[object] = [None] * 200
    spilled = SpilledValues(str(tmp_path / "answers.utf8"), pa.string(), 200)
    for pos in rng.sample(range(200), 150) + rng.choices(range(200), k=60):  # rewrites too
        value = rng.choice([f"answer {pos} #{rng.random():.6f}", f"réponse {pos} 🙂", ""])
        spilled[pos] = value
        expected[pos] = value
    spilled[3] = expected[3] = None  # (an answer taken back)
    assert spilled[0:200] == expected
    assert spilled[37:41] == expected[37:41] and spilled[199:200] == expected[199:]
    assert spilled.arrow(150, 160).type == pa.string()
    assert spilled._offsets.nbytes + spilled._lengths.nbytes == 12 * 200  # 12 bytes a row
    spilled[5] = "lone \ud83d surrogate"  # not UTF-8: kept, with ? in its place
    assert spilled[5:6] == ["lone ? surrogate"]


@pytest.mark.parametrize("preadv", [True, False])  # (a system without os.preadv: Windows)
def test_spilled_answers_of_shuffled_jobs_come_back_in_order_from_the_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preadv: bool
) -> None:
    """Jobs collected one after another, each one's lines shuffled and given in blocks:
    every range reads its own answers back, and the answers live in the file, not in
    memory (the file holds each one's bytes once, in the order they came)."""
    import numpy as np
    import pyarrow as pa

    from bedrock_batch_nb.collecting import SpilledValues

    monkeypatch.setattr(collecting, "_PREADV", preadv and collecting._PREADV)

    rng = np.random.default_rng(11)
    job_rows, jobs = 500, 4
    texts = [f"answer {pos} " + "x" * int(rng.integers(0, 300)) for pos in range(2000)]
    spilled = SpilledValues(str(tmp_path / "answers.utf8"), pa.string(), job_rows * jobs)
    for job in range(jobs):
        order = rng.permutation(job_rows) + job * job_rows
        for block in np.array_split(order, 7):
            spilled.put_many(block, pa.array([texts[p] for p in block]))
    assert (tmp_path / "answers.utf8").stat().st_size == sum(len(t) for t in texts)
    ranges = [spilled.arrow(start, start + 128) for start in range(0, 2000, 128)]
    assert [v for part in ranges for v in part.to_pylist()] == texts


def test_spilled_answers_given_in_bulk_and_one_at_a_time_keep_the_order_of_writes(
    tmp_path: Path,
) -> None:
    """Blocks of answers go to the file as Arrow arrays; single answers (lines read one at
    a time) between them still win or lose by when they came."""
    import numpy as np
    import pyarrow as pa

    from bedrock_batch_nb.collecting import SpilledValues

    rng = random.Random(3)
    expected: list[object] = [None] * 120
    spilled = SpilledValues(str(tmp_path / "answers.utf8"), pa.string(), 120)
    for step in range(40):
        if step % 3:
            positions = rng.sample(range(120), rng.randint(1, 12))
            texts = [f"bulk {pos} at {step}" for pos in positions]
            spilled.put_many(np.array(positions), pa.array(texts))
            for pos, text in zip(positions, texts, strict=True):
                expected[pos] = text
        else:
            pos = rng.randrange(120)
            spilled[pos] = expected[pos] = f"single {pos} at {step}"
    assert spilled[0:120] == expected
    assert spilled.arrow(10, 20).to_pylist() == expected[10:20]

    # a block after a single answer replaces it, and back; within a block the last wins
    same = SpilledValues(str(tmp_path / "same.utf8"), pa.string(), 3)
    same[1] = "single, replaced"
    same.put_many(np.array([1, 2, 2]), pa.array(["bulk", "bulk, replaced", "bulk again"]))
    assert same[0:3] == [None, "bulk", "bulk again"]
    same[2] = "single"
    same.put_many(np.array([0]), pa.chunked_array([pa.array([None], pa.large_string())]))
    assert same[0:3] == [None, "bulk", "single"]


def test_spilled_embeddings_read_back_by_range_with_the_last_write_winning(
    tmp_path: Path,
) -> None:
    """A large embedding run's answers on disk, a fixed-width row each: blocks and single
    answers in any order, rewrites, rows without one (holes, a null, past the last), and
    an answer of another length; a range reads back exactly its rows."""
    import pyarrow as pa

    from bedrock_batch_nb.collecting import SpilledVectors

    rng = np.random.default_rng(8)
    n, dims = 300, 16
    expected: list[Any] = [None] * n
    spilled = SpilledVectors(str(tmp_path / "answers.f64"), n)
    for step in range(60):
        positions = rng.choice(n - 20, size=int(rng.integers(1, 15)))  # repeats too
        vectors = rng.standard_normal((len(positions), dims))
        if step % 4:
            spilled.put_many(positions, pa.array(list(vectors), pa.list_(pa.float64())))
        else:
            for pos, vector in zip(positions.tolist(), vectors, strict=True):
                spilled[pos] = vector.tolist()
        for pos, vector in zip(positions.tolist(), vectors, strict=True):
            expected[pos] = vector
    spilled[3] = expected[3] = None
    spilled[5] = [1.0, 2.0, 3.0]  # another length: kept aside
    expected[5] = np.array([1.0, 2.0, 3.0])
    spilled[6] = [1.0]  # ... and replaced by a later answer of the usual length
    spilled.put_many(np.array([6]), pa.array([[0.25] * dims], pa.list_(pa.float64())))
    expected[6] = np.full(dims, 0.25)
    spilled.put_many(  # a block holding a null: read as it is given
        np.array([7, 8]), pa.array([None, [0.5] * dims], pa.list_(pa.float64()))
    )
    expected[7], expected[8] = None, np.full(dims, 0.5)
    assert spilled.dimensions == dims

    def same(got: list[Any], want: list[Any]) -> bool:
        return len(got) == len(want) and all(
            (g is None and w is None) or (g is not None and w is not None and g.tolist() == list(w))
            for g, w in zip(got, want, strict=True)
        )

    assert same(spilled[0:n], expected)
    assert same(spilled[100:140], expected[100:140])  # a range alone
    assert spilled.arrow(n - 20, n).null_count == 20  # never written: null, not zeros
    assert spilled.arrow(10, 20).type == pa.list_(pa.float64())
    size = (tmp_path / "answers.f64").stat().st_size
    assert size <= (n - 20) * dims * 8  # a row's place: nothing past the last answer
    spilled.close()


def test_a_large_embedding_runs_results_are_written_in_row_groups_of_bounded_bytes(
    tmp_path: Path,
) -> None:
    """Kept on disk, 1,024-number embeddings are written 2,048 rows to a row group (16 MiB
    of numbers) rather than 10,000 (80 MB, held more than once while written); narrower
    ones and texts keep 10,000 rows."""
    import pyarrow as pa

    titan = resolve_adapter("amazon.titan-embed-text-v2:0")
    wide = Results(10, titan, spill_path=str(tmp_path / "wide.f64"))
    wide.values.put_many(np.array([0]), pa.array([[0.0] * 1024], pa.list_(pa.float64())))
    narrow = Results(10, titan, spill_path=str(tmp_path / "narrow.f64"))
    narrow.values.put_many(np.array([0]), pa.array([[0.0] * 256], pa.list_(pa.float64())))
    texts = Results(10, CLAUDE, spill_path=str(tmp_path / "texts.parquet"))
    assert wide.batch_rows(10_000) == 2_048
    assert narrow.batch_rows(10_000) == 8_192
    assert texts.batch_rows(10_000) == 10_000
    assert Results(10, titan).batch_rows(10_000) == 10_000  # (a DataFrame's: as before)
    for results in (wide, narrow, texts):
        results.close()


def test_a_dataframe_of_wide_rows_is_written_in_row_groups_of_bounded_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_parquet converts and writes fewer rows at a time when they are wide (about
    BATCH_BYTES of Arrow data a row group), so that a DataFrame of embeddings is never
    held in Arrow 10,000 rows at once; narrow rows keep batch_rows."""
    monkeypatch.setattr(collecting, "BATCH_BYTES", 1 << 20)
    rng = np.random.default_rng(2)
    wide = pd.DataFrame(
        {"text": [f"row {i}" for i in range(500)], "embedding": list(rng.random((500, 1024)))}
    )
    write_parquet(wide, tmp_path / "wide.parquet", batch_rows=10_000)
    groups = pq.ParquetFile(tmp_path / "wide.parquet").metadata
    assert groups.num_row_groups == 4  # 8 KiB a row: about 127 rows in 1 MiB
    back = pd.read_parquet(tmp_path / "wide.parquet")
    pairs = zip(back["embedding"], wide["embedding"], strict=True)
    assert all(a.tolist() == b.tolist() for a, b in pairs)
    narrow = wide[["text"]]
    write_parquet(narrow, tmp_path / "narrow.parquet", batch_rows=10_000)
    assert pq.ParquetFile(tmp_path / "narrow.parquet").metadata.num_row_groups == 1


def test_embeddings_are_converted_in_small_pieces_with_the_schema_pyarrow_would_infer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Converting a frame of 1,024-number embeddings to Arrow holds the GIL as long as it
    takes (2,000 of them: 120 ms, a notebook's loop stalled): they are converted about
    CONVERT_BYTES at a time, and the schema is inferred from the first few arrays alone,
    the same schema (types and pandas metadata) as inferring it from them all."""
    rng = np.random.default_rng(4)
    vectors: list[Any] = list(rng.random((1000, 1024)))
    vectors[0] = vectors[500] = None  # (no answer: the first value is not the first row's)
    frame = pd.DataFrame(
        {"text": [f"row {i}" for i in range(1000)], "embedding": vectors},
        index=pd.Index([f"r{i}" for i in range(1000)], name="key"),
    )
    schema = collecting.parquet_schema(frame, 1000)
    assert schema == pa.Schema.from_pandas(frame, preserve_index=True)
    assert schema.metadata == pa.Schema.from_pandas(frame, preserve_index=True).metadata

    pieces: list[int] = []
    table_of = collecting._table_of

    def counted(part: pd.DataFrame, schema: pa.Schema) -> pa.Table:
        pieces.append(len(part))
        return table_of(part, schema)

    monkeypatch.setattr(collecting, "_table_of", counted)
    table = collecting.frame_to_arrow(frame, schema)
    assert max(pieces) <= 400 and sum(pieces) == 1000  # 3 MiB: 384 rows of 8 KiB
    back = table.to_pandas()
    assert back.index.equals(frame.index) and back["embedding"]["r500"] is None
    assert back["embedding"]["r7"].tolist() == vectors[7].tolist()
    pieces.clear()
    collecting.frame_to_arrow(frame[["text"]], schema.remove(schema.get_field_index("embedding")))
    assert pieces == [1000]  # narrow rows: CONVERT_ROWS at a time, as before
