"""Converse-format bodies (batch jobs with modelInvocationType="Converse")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bedrock_batch_nb.errors import BatchInputError
from bedrock_batch_nb.models import ConverseAdapter, InferenceParams, resolve_adapter

HAIKU = "us.anthropic.claude-3-haiku-20240307-v1:0"


def test_request_body_with_system_and_params() -> None:
    adapter = resolve_adapter(HAIKU, "Converse")
    assert isinstance(adapter, ConverseAdapter)
    assert adapter.invocation_type == "Converse"
    params = InferenceParams(max_tokens=1024, temperature=0.5, top_p=0.9, stop_sequences=("Q:",))
    body = adapter.build_request("Question?", system="Be brief.", params=params)
    assert body == {
        "messages": [{"role": "user", "content": [{"text": "Question?"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {
            "maxTokens": 1024,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["Q:"],
        },
    }
    minimal = adapter.build_request("Q", system=None, params=InferenceParams())
    assert minimal == {
        "messages": [{"role": "user", "content": [{"text": "Q"}]}],
        "inferenceConfig": {"maxTokens": 512},
    }


@pytest.mark.parametrize(
    "model_id",
    [
        HAIKU,
        "amazon.nova-pro-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
        "mistral.mistral-large-2402-v1:0",
    ],
)
def test_any_text_family(model_id: str, check_splice: Callable[..., None]) -> None:
    adapter = resolve_adapter(model_id, "Converse")
    base = resolve_adapter(model_id)
    assert isinstance(adapter, ConverseAdapter)
    assert adapter.kind == "text"
    assert adapter.family == f"{base.family} (Converse)"
    assert adapter.max_input_chars == base.max_input_chars
    check_splice(adapter, ['a "quoted"\ntext {x}', "é"], "S", InferenceParams())


def test_text_verbatim_and_splice(tricky_text: str, check_splice: Callable[..., None]) -> None:
    adapter = resolve_adapter(HAIKU, "Converse")
    body = adapter.build_request(tricky_text, system=None, params=InferenceParams())
    assert body["messages"][0]["content"][0]["text"] == tricky_text
    check_splice(adapter, [tricky_text], "S", InferenceParams(temperature=0.2))


def test_parse_response() -> None:
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "42"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 1, "totalTokens": 13},
        "metrics": {"latencyMs": 300},
    }
    out = resolve_adapter(HAIKU, "Converse").parse_response(body)
    assert (out.response, out.input_tokens, out.output_tokens) == ("42", 12, 1)


def test_parse_error_on_native_body() -> None:
    with pytest.raises(ValueError, match="Converse response has no 'output'"):
        resolve_adapter(HAIKU, "Converse").parse_response({"content": [{"text": "x"}]})


def test_validate_params() -> None:
    adapter = resolve_adapter(HAIKU, "Converse")
    assert adapter.validate_params(InferenceParams(stop_sequences=("x",)), system="S") == []
    problems = adapter.validate_params(InferenceParams(max_tokens=10_000, top_k=5))
    assert len(problems) == 2
    assert "4,096" in problems[0]
    assert "top_k is not part of the Converse format" in problems[1]
    mistral = resolve_adapter("mistral.mistral-7b-instruct-v0:2", "Converse")
    assert any(
        "no system prompt" in p for p in mistral.validate_params(InferenceParams(), system="S")
    )


def test_embedding_model_refused() -> None:
    with pytest.raises(BatchInputError, match="embedding model"):
        resolve_adapter("amazon.titan-embed-text-v2:0", "Converse")
