"""Amazon Nova (messages-v1) bodies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bedrock_batch_nb.models import InferenceParams, NovaAdapter, resolve_adapter

LITE = "amazon.nova-lite-v1:0"


def test_request_body_with_system_and_params() -> None:
    params = InferenceParams(
        max_tokens=256, temperature=0.3, top_p=0.8, top_k=20, stop_sequences=("END",)
    )
    body = NovaAdapter(LITE).build_request("Hello", system="You are terse.", params=params)
    assert body == {
        "schemaVersion": "messages-v1",
        "system": [{"text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
        "inferenceConfig": {
            "max_new_tokens": 256,
            "temperature": 0.3,
            "top_p": 0.8,
            "top_k": 20,
            "stopSequences": ["END"],
        },
    }


def test_request_body_minimal() -> None:
    body = NovaAdapter(LITE).build_request("Hello", system=None, params=InferenceParams())
    assert body == {
        "schemaVersion": "messages-v1",
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
        "inferenceConfig": {"max_new_tokens": 512},
    }


def test_text_verbatim_and_splice(tricky_text: str, check_splice: Callable[..., None]) -> None:
    adapter = NovaAdapter(LITE)
    body = adapter.build_request(tricky_text, system="S", params=InferenceParams())
    assert body["messages"][0]["content"][0]["text"] == tricky_text
    check_splice(adapter, [tricky_text, "x"], "S", InferenceParams(temperature=0.1))


def test_parse_response() -> None:
    body = {
        "output": {
            "message": {"role": "assistant", "content": [{"text": "Positive"}, {"text": "!"}]}
        },
        "stopReason": "end_turn",
        "usage": {"inputTokens": 30, "outputTokens": 2, "totalTokens": 32},
    }
    out = NovaAdapter(LITE).parse_response(body)
    assert out.response == "Positive!"
    assert (out.input_tokens, out.output_tokens) == (30, 2)


@pytest.mark.parametrize(
    "body",
    [{"content": [{"text": "x"}]}, {"output": {}}, {"output": {"message": {"content": "x"}}}],
    ids=repr,
)
def test_parse_error(body: object) -> None:
    with pytest.raises(ValueError, match="Nova response"):
        NovaAdapter(LITE).parse_response(body)  # type: ignore[arg-type]


def test_validate_params_and_limits() -> None:
    adapter = NovaAdapter(LITE)
    assert adapter.max_output_tokens == 5_000
    assert adapter.max_input_chars == 900_000
    assert resolve_adapter("us.amazon.nova-micro-v1:0").max_input_chars == 384_000
    problems = adapter.validate_params(InferenceParams(max_tokens=6000, top_k=500))
    assert len(problems) == 2
    assert "5,000" in problems[0]
    assert "top_k must be a whole number from 0 to 128" in problems[1]


def test_only_text_nova_models() -> None:
    assert isinstance(resolve_adapter("global.amazon.nova-2-lite-v1:0"), NovaAdapter)
    for image_or_speech in ("amazon.nova-canvas-v1:0", "amazon.nova-sonic-v1:0"):
        with pytest.raises(ValueError, match="Unknown model"):
            resolve_adapter(image_or_speech)
