"""Anthropic Claude (Messages API) bodies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bedrock_batch_nb.models import AnthropicAdapter, InferenceParams, resolve_adapter

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PARAMS = InferenceParams(
    max_tokens=300, temperature=0.2, top_p=0.9, top_k=40, stop_sequences=("\n\nHuman:",)
)


def test_request_body_with_system_and_params() -> None:
    body = AnthropicAdapter(HAIKU).build_request("Hi there", system="Be brief.", params=PARAMS)
    assert body == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
        "system": "Be brief.",
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
    }


def test_request_body_minimal() -> None:
    body = AnthropicAdapter(HAIKU).build_request("Hi", system=None, params=InferenceParams())
    assert body == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_text_verbatim_and_splice(tricky_text: str, check_splice: Callable[..., None]) -> None:
    adapter = AnthropicAdapter(HAIKU)
    body = adapter.build_request(tricky_text, system="S", params=PARAMS)
    assert body["messages"][0]["content"][0]["text"] == tricky_text
    check_splice(adapter, [tricky_text, "other"], "S", PARAMS)
    check_splice(adapter, [tricky_text], None, InferenceParams())


def test_parse_response() -> None:
    body = {
        "id": "msg_bdrk_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-haiku-20240307",
        "content": [{"type": "text", "text": "Why did "}, {"type": "text", "text": "the cat…"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 19, "output_tokens": 42},
    }
    out = AnthropicAdapter(HAIKU).parse_response(body)
    assert out.response == "Why did the cat…"
    assert (out.input_tokens, out.output_tokens) == (19, 42)
    assert out.embedding is None


def test_parse_response_skips_non_text_blocks_and_missing_usage() -> None:
    body = {"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "A"}]}
    out = AnthropicAdapter(HAIKU).parse_response(body)
    assert out.response == "A"
    assert out.input_tokens is None


@pytest.mark.parametrize("body", [{"generation": "x"}, {"content": "text"}, [], "nope"], ids=repr)
def test_parse_error(body: object) -> None:
    with pytest.raises(ValueError, match="Claude response"):
        AnthropicAdapter(HAIKU).parse_response(body)  # type: ignore[arg-type]


def test_validate_params() -> None:
    adapter = AnthropicAdapter(HAIKU)
    assert adapter.validate_params(PARAMS, system="x") == []
    problems = adapter.validate_params(
        InferenceParams(max_tokens=5000, temperature=1.5, top_p=-0.1, top_k=501)
    )
    assert len(problems) == 4
    assert "4,096" in problems[0]
    assert "temperature" in problems[1]
    assert "top_p" in problems[2]
    assert "top_k" in problems[3]
    assert adapter.validate_params(InferenceParams(max_tokens=0)) == [
        "max_tokens must be a whole number of at least 1, not 0."
    ]
    assert "non-empty" in adapter.validate_params(InferenceParams(stop_sequences=("",)))[0]


def test_limits_per_model() -> None:
    assert AnthropicAdapter(HAIKU).max_output_tokens == 4096
    sonnet35 = resolve_adapter("us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert sonnet35.max_output_tokens == 8192
    assert sonnet35.max_input_chars == 600_000
    opus45 = resolve_adapter("global.anthropic.claude-opus-4-5-20251101-v1:0")
    assert opus45.max_output_tokens == 64_000  # longest prefix beats claude-opus-4


def test_temperature_and_top_p_exclusive_on_claude_4_5() -> None:
    adapter = resolve_adapter("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    both = InferenceParams(temperature=0.5, top_p=0.9)
    assert any("not both" in p for p in adapter.validate_params(both))
    assert adapter.validate_params(InferenceParams(temperature=0.5)) == []
