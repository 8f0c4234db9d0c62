"""Mistral AI text-completion bodies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bedrock_batch_nb.models import InferenceParams, MistralAdapter, resolve_adapter

MISTRAL = "mistral.mistral-7b-instruct-v0:2"


def test_request_body_with_params() -> None:
    params = InferenceParams(
        max_tokens=100, temperature=0.5, top_p=0.9, top_k=50, stop_sequences=("###",)
    )
    body = MistralAdapter(MISTRAL).build_request("Say hi", system=None, params=params)
    assert body == {
        "prompt": "<s>[INST] Say hi [/INST]",
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 50,
        "stop": ["###"],
    }


def test_system_prompt_goes_first_inside_inst() -> None:
    body = MistralAdapter(MISTRAL).build_request(
        "Say hi", system="Be kind.", params=InferenceParams()
    )
    assert body == {"prompt": "<s>[INST] Be kind.\n\nSay hi [/INST]", "max_tokens": 512}


def test_text_verbatim_and_splice(tricky_text: str, check_splice: Callable[..., None]) -> None:
    adapter = MistralAdapter(MISTRAL)
    prompt = adapter.build_request(tricky_text, system=None, params=InferenceParams())["prompt"]
    assert prompt == f"<s>[INST] {tricky_text} [/INST]"
    check_splice(adapter, [tricky_text, "x"], None, InferenceParams())
    check_splice(adapter, [tricky_text], "S", InferenceParams(top_k=3))


def test_parse_response() -> None:
    out = MistralAdapter(MISTRAL).parse_response(
        {"outputs": [{"text": " Hi!", "stop_reason": "stop"}]}
    )
    assert out.response == " Hi!"
    assert (out.input_tokens, out.output_tokens) == (None, None)


def test_parse_chat_shape() -> None:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    out = MistralAdapter(MISTRAL).parse_response(body)
    assert (out.response, out.input_tokens, out.output_tokens) == ("Hi", 3, 1)


@pytest.mark.parametrize("body", [{"outputs": []}, {"generation": "x"}, {"outputs": [{}]}])
def test_parse_error(body: object) -> None:
    with pytest.raises(ValueError, match=r"Mistral response has no 'outputs\[0\].text'"):
        MistralAdapter(MISTRAL).parse_response(body)  # type: ignore[arg-type]


def test_validate_params_and_limits() -> None:
    adapter = MistralAdapter(MISTRAL)
    assert adapter.max_input_chars == 96_000
    mixtral = resolve_adapter("mistral.mixtral-8x7b-instruct-v0:1")
    assert mixtral.max_output_tokens == 4096
    problems = adapter.validate_params(
        InferenceParams(top_k=0, stop_sequences=tuple("abcdefghijk"))
    )
    assert len(problems) == 2
    assert "top_k must be a whole number from 1 to 200" in problems[0]
    assert "at most 10 stop_sequences" in problems[1]
