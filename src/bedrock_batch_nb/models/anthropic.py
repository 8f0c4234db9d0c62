"""Anthropic Claude through the Messages API (``anthropic.claude*``).

Request: ``{"anthropic_version": "bedrock-2023-05-31", "max_tokens", "messages": [{"role":
"user", "content": [{"type": "text", "text"}]}], "system"?, "temperature"?, "top_p"?,
"top_k"?, "stop_sequences"?}``.  Response: ``{"content": [{"type": "text", "text"}, ...],
"usage": {"input_tokens", "output_tokens"}, ...}``.
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

ANTHROPIC_VERSION = "bedrock-2023-05-31"

# Limits (assumptions from Anthropic's model tables, 2024-2026): context 200k tokens for
# Claude 3 and later, 100k for Claude 2 / Instant; output tokens as listed per model.
_CTX_200K = 200_000 * CHARS_PER_TOKEN
_CTX_100K = 100_000 * CHARS_PER_TOKEN


class AnthropicAdapter(ModelAdapter):
    """Claude Messages API bodies (``InvokeModel`` batch format)."""

    family = "anthropic"
    display_name = "Anthropic Claude"
    kind = "text"
    prefixes = ("anthropic.claude",)
    max_input_chars = _CTX_200K
    max_output_tokens = 64_000
    model_limits = (
        ModelLimits("anthropic.claude-v2", _CTX_100K, 4_096),
        ModelLimits("anthropic.claude-instant", _CTX_100K, 4_096),
        ModelLimits("anthropic.claude-3-haiku", _CTX_200K, 4_096),
        ModelLimits("anthropic.claude-3-sonnet", _CTX_200K, 4_096),
        ModelLimits("anthropic.claude-3-opus", _CTX_200K, 4_096),
        ModelLimits("anthropic.claude-3-5-haiku", _CTX_200K, 8_192),
        ModelLimits("anthropic.claude-3-5-sonnet", _CTX_200K, 8_192),
        ModelLimits("anthropic.claude-3-7-sonnet", _CTX_200K, 64_000),
        ModelLimits("anthropic.claude-sonnet-4", _CTX_200K, 64_000),
        ModelLimits("anthropic.claude-opus-4", _CTX_200K, 32_000),
        ModelLimits("anthropic.claude-opus-4-5", _CTX_200K, 64_000),
        ModelLimits("anthropic.claude-haiku-4-5", _CTX_200K, 64_000),
    )
    top_k_range = (0, 500)

    # Claude 4.5-generation models reject a request that sets both temperature and top_p.
    _ONE_OF_TEMPERATURE_TOP_P = (
        "anthropic.claude-sonnet-4-5",
        "anthropic.claude-haiku-4-5",
        "anthropic.claude-opus-4-1",
        "anthropic.claude-opus-4-5",
    )

    def build_request(
        self, text: str, *, system: str | None, params: InferenceParams
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": params.max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        }
        if system:
            body["system"] = system
        body.update(sampling(params))
        return body

    def parse_response(self, body: Mapping[str, Any]) -> ModelOutput:
        what = "Claude response"
        body = expect_mapping(body, what)
        content = expect_key(body, "content", what)
        if not isinstance(content, list):
            raise ValueError(f"{what} 'content' is not a list")
        text = "".join(
            block["text"]
            for block in content
            if isinstance(block, Mapping)
            and block.get("type", "text") == "text"
            and isinstance(block.get("text"), str)
        )
        usage = body.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        return ModelOutput(
            response=text,
            input_tokens=optional_int(usage.get("input_tokens")),
            output_tokens=optional_int(usage.get("output_tokens")),
        )

    def validate_params(self, params: InferenceParams, *, system: str | None = None) -> list[str]:
        problems = super().validate_params(params, system=system)
        if (
            params.temperature is not None
            and params.top_p is not None
            and self.base_id.startswith(self._ONE_OF_TEMPERATURE_TOP_P)
        ):
            problems.append(
                f"{self.model_id} takes temperature or top_p, not both: drop one of them."
            )
        return problems
