"""Mistral AI text-completion models (``mistral.mistral-*``, ``mistral.mixtral-*``).

Request: ``{"prompt": "<s>[INST] ... [/INST]", "max_tokens", "temperature"?, "top_p"?,
"top_k"?, "stop"?}``.  Response: ``{"outputs": [{"text", "stop_reason"}]}`` (no token
counts); the chat shape ``{"choices": [{"message": {"content"}}]}`` is read too.

The format has no system role: a system prompt goes first inside ``[INST]``, separated
from the text by a blank line (Mistral's own convention).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import (
    CHARS_PER_TOKEN,
    InferenceParams,
    ModelAdapter,
    ModelLimits,
    ModelOutput,
    expect_mapping,
    optional_int,
    sampling,
)


def instruct_prompt(text: str, system: str | None = None) -> str:
    inner = f"{system}\n\n{text}" if system else text
    return f"<s>[INST] {inner} [/INST]"


class MistralAdapter(ModelAdapter):
    """Mistral bodies.  Limits (assumed from Bedrock's Mistral pages): context 32k tokens
    (128k for Mistral Large 2407); output 8,192 tokens (4,096 for Mixtral); top_k 1-200;
    up to 10 stop sequences."""

    family = "mistral"
    display_name = "Mistral AI"
    kind = "text"
    prefixes = ("mistral.mistral-", "mistral.mixtral-")
    max_input_chars = 32_000 * CHARS_PER_TOKEN
    max_output_tokens = 8_192
    model_limits = (
        ModelLimits("mistral.mixtral-", 32_000 * CHARS_PER_TOKEN, 4_096),
        ModelLimits("mistral.mistral-large-2407", 128_000 * CHARS_PER_TOKEN, 8_192),
    )
    top_k_range = (1, 200)
    max_stop_sequences = 10

    def build_request(
        self, text: str, *, system: str | None, params: InferenceParams
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": instruct_prompt(text, system),
            "max_tokens": params.max_tokens,
        }
        body.update(sampling(params, stop_key="stop"))
        return body

    def parse_response(self, body: Mapping[str, Any]) -> ModelOutput:
        what = "Mistral response"
        body = expect_mapping(body, what)
        outputs = body.get("outputs")
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], Mapping):
            text = outputs[0].get("text")
            if isinstance(text, str):
                return ModelOutput(response=text)
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            message = choices[0].get("message")
            if isinstance(message, Mapping) and isinstance(message.get("content"), str):
                usage = body.get("usage")
                usage = usage if isinstance(usage, Mapping) else {}
                return ModelOutput(
                    response=message["content"],
                    input_tokens=optional_int(usage.get("prompt_tokens")),
                    output_tokens=optional_int(usage.get("completion_tokens")),
                )
        keys = ", ".join(sorted(map(str, body))) or "none"
        raise ValueError(f"{what} has no 'outputs[0].text' (keys: {keys})")
