"""Meta Llama 3 instruct models (``meta.llama3*``: 3, 3.1, 3.2, 3.3).

Request: ``{"prompt", "max_gen_len", "temperature"?, "top_p"?}`` where ``prompt`` is the
text wrapped in the Llama 3 chat template.  Response: ``{"generation",
"prompt_token_count", "generation_token_count", "stop_reason"}``.
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
    expect_key,
    expect_mapping,
    optional_int,
    sampling,
)

BEGIN = "<|begin_of_text|>"


def _turn(role: str, text: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"


def chat_prompt(text: str, system: str | None = None) -> str:
    """The Llama 3 chat template for one user turn, ending where the assistant answers."""
    head = BEGIN + (_turn("system", system) if system else "")
    return f"{head}{_turn('user', text)}<|start_header_id|>assistant<|end_header_id|>\n\n"


class LlamaAdapter(ModelAdapter):
    """Llama 3 bodies.  Limits (assumed from Meta's model cards and Bedrock's parameter
    page): context 8k tokens for Llama 3 8B/70B, 128k for 3.1 and later; ``max_gen_len``
    at most 2,048.  No ``top_k`` and no stop sequences in the native format."""

    family = "llama"
    display_name = "Meta Llama 3"
    kind = "text"
    prefixes = ("meta.llama3",)
    max_input_chars = 128_000 * CHARS_PER_TOKEN
    max_output_tokens = 2_048
    model_limits = (
        ModelLimits("meta.llama3-8b", 8_000 * CHARS_PER_TOKEN, 2_048),
        ModelLimits("meta.llama3-70b", 8_000 * CHARS_PER_TOKEN, 2_048),
    )
    supports_top_k = False
    supports_stop_sequences = False

    def build_request(
        self, text: str, *, system: str | None, params: InferenceParams
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": chat_prompt(text, system),
            "max_gen_len": params.max_tokens,
        }
        body.update(sampling(params, top_k=False, stop_key=None))  # validate_params refuses them
        return body

    def parse_response(self, body: Mapping[str, Any]) -> ModelOutput:
        what = "Llama response"
        body = expect_mapping(body, what)
        generation = expect_key(body, "generation", what)
        if not isinstance(generation, str):
            raise ValueError(f"{what} 'generation' is not a string")
        return ModelOutput(
            response=generation,
            input_tokens=optional_int(body.get("prompt_token_count")),
            output_tokens=optional_int(body.get("generation_token_count")),
        )
