"""Meta Llama 3 bodies (chat template in the prompt)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bedrock_batch_nb.models import InferenceParams, LlamaAdapter, resolve_adapter

LLAMA = "meta.llama3-1-8b-instruct-v1:0"


def test_request_body_with_system_and_params() -> None:
    body = LlamaAdapter(LLAMA).build_request(
        "What is 2+2?",
        system="Answer with a number.",
        params=InferenceParams(max_tokens=64, temperature=0.0, top_p=0.5),
    )
    assert body == {
        "prompt": (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Answer with a number.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        "max_gen_len": 64,
        "temperature": 0.0,
        "top_p": 0.5,
    }


def test_request_body_without_system() -> None:
    body = LlamaAdapter(LLAMA).build_request("Hi", system=None, params=InferenceParams())
    assert body == {
        "prompt": (
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        "max_gen_len": 512,
    }


def test_text_verbatim_and_splice(tricky_text: str, check_splice: Callable[..., None]) -> None:
    adapter = LlamaAdapter(LLAMA)
    prompt = adapter.build_request(tricky_text, system="S", params=InferenceParams())["prompt"]
    assert f"<|end_header_id|>\n\n{tricky_text}<|eot_id|>" in prompt
    check_splice(adapter, [tricky_text, "x"], "S", InferenceParams())
    check_splice(adapter, [tricky_text], None, InferenceParams(temperature=0.4))


def test_parse_response() -> None:
    body = {
        "generation": "4",
        "prompt_token_count": 25,
        "generation_token_count": 1,
        "stop_reason": "stop",
    }
    out = LlamaAdapter(LLAMA).parse_response(body)
    assert (out.response, out.input_tokens, out.output_tokens) == ("4", 25, 1)


@pytest.mark.parametrize("body", [{"outputs": []}, {"generation": None}], ids=repr)
def test_parse_error(body: object) -> None:
    with pytest.raises(ValueError, match="Llama response"):
        LlamaAdapter(LLAMA).parse_response(body)  # type: ignore[arg-type]


def test_validate_params_and_limits() -> None:
    adapter = LlamaAdapter(LLAMA)
    assert adapter.max_input_chars == 384_000
    assert resolve_adapter("meta.llama3-8b-instruct-v1:0").max_input_chars == 24_000
    problems = adapter.validate_params(
        InferenceParams(max_tokens=4096, top_k=5, stop_sequences=("x",))
    )
    assert len(problems) == 3
    assert "2,048" in problems[0]
    assert "takes no top_k" in problems[1]
    assert "takes no stop_sequences" in problems[2]
