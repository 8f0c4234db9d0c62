"""The Converse format (batch jobs with ``modelInvocationType="Converse"``), for any text
model a family adapter knows.

Request: ``{"messages": [{"role": "user", "content": [{"text"}]}], "system": [{"text"}],
"inferenceConfig": {"maxTokens", "temperature"?, "topP"?, "stopSequences"?}}``.
Response: ``{"output": {"message": {"content": [{"text"}]}}, "usage": {"inputTokens",
"outputTokens"}}``.

Limits and parameter ranges come from the model's own family adapter.  ``top_k`` is not a
Converse field (it would need ``additionalModelRequestFields``, whose keys differ per
model), so it is refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .base import InferenceParams, ModelAdapter, ModelOutput, messages_output


class ConverseAdapter(ModelAdapter):
    """Converse bodies for the model that ``base`` (its InvokeModel adapter) describes."""

    family = "converse"
    display_name = "Converse"
    kind = "text"
    invocation_type = "Converse"
    max_input_chars = 0  # set from the family adapter

    # Models whose Converse support has no system prompt (Bedrock's feature table).
    _NO_SYSTEM = ("mistral.mistral-7b", "mistral.mixtral-")

    def __init__(self, model_id: str, base: ModelAdapter) -> None:
        super().__init__(model_id)
        if base.kind != "text":
            raise ValueError("the Converse format serves text models only")
        self.base = base
        self.family = f"{base.family} (Converse)"
        self.max_input_chars = base.max_input_chars
        self.max_output_tokens = base.max_output_tokens

    def build_request(
        self, text: str, *, system: str | None, params: InferenceParams
    ) -> dict[str, Any]:
        config: dict[str, Any] = {"maxTokens": params.max_tokens}
        if params.temperature is not None:
            config["temperature"] = params.temperature
        if params.top_p is not None:
            config["topP"] = params.top_p
        if params.stop_sequences:
            config["stopSequences"] = list(params.stop_sequences)
        body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": text}]}]}
        if system:
            body["system"] = [{"text": system}]
        body["inferenceConfig"] = config
        return body

    def parse_response(self, body: Mapping[str, Any]) -> ModelOutput:
        return messages_output(body, "Converse response")

    def validate_params(self, params: InferenceParams, *, system: str | None = None) -> list[str]:
        no_system = self.base_id.startswith(self._NO_SYSTEM)
        problems = self.base.validate_params(
            replace(params, top_k=None, stop_sequences=()), system=None if no_system else system
        )
        if params.top_k is not None:
            problems.append(
                "top_k is not part of the Converse format: drop it, or use "
                "invocation_type='InvokeModel'."
            )
        if any(not isinstance(s, str) or not s for s in params.stop_sequences):
            problems.append("stop_sequences must be non-empty strings.")
        if system and no_system:
            problems.append(
                f"{self.model_id} takes no system prompt through Converse: drop system_prompt."
            )
        return problems
