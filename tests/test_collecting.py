"""Collecting: output lines joined back to rows, whatever their order or state."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bedrock_batch_nb.collecting import Results, error_message, write_parquet
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


def error_line(pos: int, message: str = "Malformed input request") -> str:
    return json.dumps(
        {
            "recordId": record_id(pos),
            "modelInput": {},
            "error": {"errorCode": 400, "errorMessage": message},
        }
    )


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


def test_parquet_written_in_row_groups_keeps_late_values_and_types(tmp_path: Path) -> None:
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
