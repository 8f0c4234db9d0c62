"""Amazon Nova understanding models (``amazon.nova-micro``, ``-lite``, ``-pro``,
``-premier``, ``amazon.nova-2-lite``) in their native ``messages-v1`` format.

Request: ``{"schemaVersion": "messages-v1", "system": [{"text"}], "messages": [{"role":
"user", "content": [{"text"}]}], "inferenceConfig": {"max_new_tokens", "temperature",
"top_p", "top_k", "stopSequences"}}``.  Response: ``{"output": {"message": {"content":
[{"text"}]}}, "usage": {"inputTokens", "outputTokens"}}``.

The ``inferenceConfig`` names are those of the project's facts file and of the Nova user
guide's InvokeModel examples (``max_new_tokens``, ``top_p``, ``top_k``); newer Nova pages
show the Converse-style names (``maxTokens``, ``topP``, ``topK``).  They are kept in
``CONFIG_KEYS`` so one line changes them.
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
    messages_output,
)

CONFIG_KEYS = {
    "max_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop_sequences": "stopSequences",
}


class NovaAdapter(ModelAdapter):
    """Nova text bodies.  Limits (assumed from the Nova user guide): context 128k tokens
    (Micro), 300k (Lite, Pro), 1M (Premier, Nova 2 Lite); output 5k tokens (Micro, Lite,
    Pro), 32k (Premier), 64k (Nova 2 Lite)."""

    family = "nova"
    display_name = "Amazon Nova"
    kind = "text"
    prefixes = (
        "amazon.nova-micro",
        "amazon.nova-lite",
        "amazon.nova-pro",
        "amazon.nova-premier",
        "amazon.nova-2-lite",
    )
    max_input_chars = 300_000 * CHARS_PER_TOKEN
    max_output_tokens = 5_000
    model_limits = (
        ModelLimits("amazon.nova-micro", 128_000 * CHARS_PER_TOKEN, 5_000),
        ModelLimits("amazon.nova-lite", 300_000 * CHARS_PER_TOKEN, 5_000),
        ModelLimits("amazon.nova-pro", 300_000 * CHARS_PER_TOKEN, 5_000),
        ModelLimits("amazon.nova-premier", 1_000_000 * CHARS_PER_TOKEN, 32_000),
        ModelLimits("amazon.nova-2-lite", 1_000_000 * CHARS_PER_TOKEN, 65_536),
    )
    top_k_range = (0, 128)

    def build_request(
        self, text: str, *, system: str | None, params: InferenceParams
    ) -> dict[str, Any]:
        config: dict[str, Any] = {CONFIG_KEYS["max_tokens"]: params.max_tokens}
        if params.temperature is not None:
            config[CONFIG_KEYS["temperature"]] = params.temperature
        if params.top_p is not None:
            config[CONFIG_KEYS["top_p"]] = params.top_p
        if params.top_k is not None:
            config[CONFIG_KEYS["top_k"]] = params.top_k
        if params.stop_sequences:
            config[CONFIG_KEYS["stop_sequences"]] = list(params.stop_sequences)
        body: dict[str, Any] = {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": config,
        }
        if system:
            body["system"] = [{"text": system}]
        return body

    def parse_response(self, body: Mapping[str, Any]) -> ModelOutput:
        return messages_output(body, "Nova response")
