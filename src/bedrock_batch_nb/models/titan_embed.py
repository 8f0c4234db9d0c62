"""Amazon Titan Text Embeddings V2 (``amazon.titan-embed-text-v2``).

Request: ``{"inputText", "dimensions": 256|512|1024, "normalize"}``.  Response:
``{"embedding": [...], "inputTextTokenCount"}`` (``embeddingsByType.float`` also read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import InferenceParams, ModelAdapter, ModelOutput, expect_mapping, optional_int

DIMENSIONS = (256, 512, 1024)


class TitanEmbedAdapter(ModelAdapter):
    """Titan Text Embeddings V2.  Limit: 8,192 tokens or 50,000 characters per text
    (the model's documented input limit)."""

    family = "titan-embed"
    display_name = "Amazon Titan Text Embeddings V2"
    kind = "embedding"
    prefixes = ("amazon.titan-embed-text-v2",)
    max_input_chars = 50_000
    supports_system_prompt = False
    supports_temperature = False
    supports_top_p = False
    supports_top_k = False
    supports_stop_sequences = False

    def build_request(
        self, text: str, *, system: str | None, params: InferenceParams
    ) -> dict[str, Any]:
        return {"inputText": text, "dimensions": params.dimensions, "normalize": params.normalize}

    def parse_response(self, body: Mapping[str, Any]) -> ModelOutput:
        what = "Titan embedding response"
        body = expect_mapping(body, what)
        embedding = body.get("embedding")
        if embedding is None:
            by_type = body.get("embeddingsByType")
            if isinstance(by_type, Mapping):
                embedding = by_type.get("float")
        if not isinstance(embedding, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in embedding
        ):
            keys = ", ".join(sorted(map(str, body))) or "none"
            raise ValueError(f"{what} has no list of numbers under 'embedding' (keys: {keys})")
        return ModelOutput(
            embedding=[float(v) for v in embedding],
            input_tokens=optional_int(body.get("inputTextTokenCount")),
        )

    def validate_params(self, params: InferenceParams, *, system: str | None = None) -> list[str]:
        problems = super().validate_params(params, system=system)
        if params.dimensions not in DIMENSIONS or isinstance(params.dimensions, bool):
            problems.append(
                f"dimensions must be one of {', '.join(map(str, DIMENSIONS))} for "
                f"{self.display_name}, not {params.dimensions!r}."
            )
        if not isinstance(params.normalize, bool):
            problems.append(f"normalize must be True or False, not {params.normalize!r}.")
        return problems
