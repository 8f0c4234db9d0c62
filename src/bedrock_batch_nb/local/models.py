"""The model catalogue and the deterministic "models" that answer requests.

A text reply always contains the last user message verbatim (``"Local reply to: " + text``);
an embedding is derived from a SHA-256 of the text, so the same text gives the same vector.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .schemas import CONVERSE, anthropic_texts, message_texts

REGION = "us-east-1"
ACCOUNT = "123456789012"
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")
REPLY_PREFIX = "Local reply to: "


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    name: str
    provider: str
    family: str
    output: str  # "TEXT" or "EMBEDDING"

    @property
    def arn(self) -> str:
        return f"arn:aws:bedrock:{REGION}::foundation-model/{self.model_id}"

    def summary(self) -> dict[str, Any]:
        return {
            "modelArn": self.arn,
            "modelId": self.model_id,
            "modelName": self.name,
            "providerName": self.provider,
            "inputModalities": ["TEXT"],
            "outputModalities": [self.output],
            "responseStreamingSupported": self.output == "TEXT",
            "customizationsSupported": [],
            "inferenceTypesSupported": (
                ["ON_DEMAND", "INFERENCE_PROFILE"] if self.output == "TEXT" else ["ON_DEMAND"]
            ),
            "modelLifecycle": {"status": "ACTIVE"},
        }


CATALOGUE: tuple[ModelInfo, ...] = (
    ModelInfo("anthropic.claude-3-haiku-20240307-v1:0", "Claude 3 Haiku", "Anthropic",
              "anthropic", "TEXT"),
    ModelInfo("anthropic.claude-3-5-sonnet-20240620-v1:0", "Claude 3.5 Sonnet", "Anthropic",
              "anthropic", "TEXT"),
    ModelInfo("anthropic.claude-3-5-haiku-20241022-v1:0", "Claude 3.5 Haiku", "Anthropic",
              "anthropic", "TEXT"),
    ModelInfo("amazon.titan-embed-text-v2:0", "Titan Text Embeddings V2", "Amazon",
              "titan-embed", "EMBEDDING"),
    ModelInfo("amazon.nova-micro-v1:0", "Nova Micro", "Amazon", "nova", "TEXT"),
    ModelInfo("amazon.nova-lite-v1:0", "Nova Lite", "Amazon", "nova", "TEXT"),
    ModelInfo("amazon.nova-pro-v1:0", "Nova Pro", "Amazon", "nova", "TEXT"),
    ModelInfo("meta.llama3-1-8b-instruct-v1:0", "Llama 3.1 8B Instruct", "Meta", "llama",
              "TEXT"),
    ModelInfo("meta.llama3-1-70b-instruct-v1:0", "Llama 3.1 70B Instruct", "Meta", "llama",
              "TEXT"),
    ModelInfo("mistral.mistral-7b-instruct-v0:2", "Mistral 7B Instruct", "Mistral AI",
              "mistral", "TEXT"),
    ModelInfo("mistral.mistral-large-2402-v1:0", "Mistral Large (24.02)", "Mistral AI",
              "mistral", "TEXT"),
)  # fmt: skip

_BY_ID = {m.model_id: m for m in CATALOGUE}
_FM_ARN = re.compile(r"^arn:aws(-[^:]+)?:bedrock:[a-z0-9-]+:\d{0,12}:foundation-model/(.+)$")
_PROFILE_ARN = re.compile(r"^arn:aws(-[^:]+)?:bedrock:[a-z0-9-]+:\d{12}:inference-profile/(.+)$")


def base_model_id(model_id: str) -> str:
    """Strip a foundation-model / inference-profile ARN and a cross-Region profile prefix."""
    match = _FM_ARN.match(model_id) or _PROFILE_ARN.match(model_id)
    if match:
        model_id = match.group(2)
    for prefix in PROFILE_PREFIXES:
        if model_id.startswith(prefix) and model_id[len(prefix) :] in _BY_ID:
            return model_id[len(prefix) :]
    return model_id


def resolve_model(model_id: str) -> ModelInfo | None:
    """The model a job or a runtime call names: its id, a cross-Region profile id, or the
    ARN of either."""
    return _BY_ID.get(base_model_id(model_id))


def foundation_model(identifier: str) -> ModelInfo | None:
    """GetFoundationModel's model: an id or a foundation-model ARN (not a profile)."""
    match = _FM_ARN.match(identifier)
    return _BY_ID.get(match.group(2) if match else identifier)


@dataclass(frozen=True)
class InferenceProfile:
    """A system-defined cross-Region inference profile: ``prefix`` + a model's id."""

    prefix: str
    model: ModelInfo

    @property
    def profile_id(self) -> str:
        return self.prefix + self.model.model_id

    def summary(self) -> dict[str, Any]:
        geography = self.prefix.rstrip(".").upper()
        return {
            "inferenceProfileName": f"{geography} {self.model.name}",
            "description": f"Routes requests to {self.model.name} in {geography} Regions.",
            "inferenceProfileArn": (
                f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{self.profile_id}"
            ),
            "models": [{"modelArn": self.model.arn}],
            "inferenceProfileId": self.profile_id,
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        }


PROFILES: tuple[InferenceProfile, ...] = tuple(
    InferenceProfile(prefix, model) for prefix in PROFILE_PREFIXES for model in CATALOGUE
)
"""Every profile a job may name (as :func:`resolve_model` takes them)."""

_PROFILE_BY_ID = {p.profile_id: p for p in PROFILES}


def inference_profile(identifier: str) -> InferenceProfile | None:
    """GetInferenceProfile's profile: a profile id or its ARN."""
    match = _PROFILE_ARN.match(identifier)
    return _PROFILE_BY_ID.get(match.group(2) if match else identifier)


# --- deterministic model behaviour --------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(*texts: str) -> int:
    """A simple, stable token estimate: words and punctuation marks, at least 1 per text."""
    return sum(max(1, len(_TOKEN.findall(t))) for t in texts if t) or 1


def reply_text(last_user_text: str) -> str:
    return REPLY_PREFIX + last_user_text


def embedding(text: str, dimensions: int = 1024, normalize: bool = True) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")
    vector = np.random.RandomState(seed).standard_normal(dimensions)
    if normalize:
        vector = vector / float(np.linalg.norm(vector))
    return [float(x) for x in vector]


@dataclass(frozen=True)
class Reply:
    body: dict[str, Any]
    input_tokens: int
    output_tokens: int


def respond(family: str, body: Mapping[str, Any], model_id: str) -> Reply:
    """The response body the model family gives to an already-valid request body."""
    if family == "anthropic":
        texts, last = anthropic_texts(body)
        out = reply_text(last)
        tin, tout = count_tokens(*texts), count_tokens(out)
        return Reply(
            {
                "id": "msg_bdrk_" + uuid.uuid4().hex[:24],
                "type": "message",
                "role": "assistant",
                "model": base_model_id(model_id).split(".", 1)[-1].split("-v", 1)[0],
                "content": [{"type": "text", "text": out}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": tin, "output_tokens": tout},
            },
            tin,
            tout,
        )
    if family == "titan-embed":
        text = str(body["inputText"])
        dims = int(body.get("dimensions", 1024))
        normalize = bool(body.get("normalize", True))
        vector = embedding(text, dims, normalize)
        tin = count_tokens(text)
        result: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": tin}
        types = body.get("embeddingTypes")
        if types:
            by_type: dict[str, Any] = {}
            if "float" in types:
                by_type["float"] = vector
            if "binary" in types:
                by_type["binary"] = [1 if x > 0 else 0 for x in vector]
            result["embeddingsByType"] = by_type
        return Reply(result, tin, 0)
    if family in ("nova", CONVERSE):
        texts, last = message_texts(body)
        out = reply_text(last)
        tin, tout = count_tokens(*texts), count_tokens(out)
        return Reply(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": out}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": tin, "outputTokens": tout, "totalTokens": tin + tout},
            },
            tin,
            tout,
        )
    if family == "llama":
        prompt = str(body["prompt"])
        out = reply_text(prompt)
        tin, tout = count_tokens(prompt), count_tokens(out)
        return Reply(
            {
                "generation": out,
                "prompt_token_count": tin,
                "generation_token_count": tout,
                "stop_reason": "stop",
            },
            tin,
            tout,
        )
    if family == "mistral":
        prompt = str(body["prompt"])
        out = reply_text(prompt)
        tin, tout = count_tokens(prompt), count_tokens(out)
        return Reply({"outputs": [{"text": out, "stop_reason": "stop"}]}, tin, tout)
    raise ValueError(f"unknown family {family!r}")


def input_tokens(family: str, body: Mapping[str, Any]) -> int:
    """Input tokens of a valid body, as CountTokens reports them."""
    if family == "anthropic":
        return count_tokens(*anthropic_texts(body)[0])
    if family in ("nova", CONVERSE):
        return count_tokens(*message_texts(body)[0])
    if family == "titan-embed":
        return count_tokens(str(body["inputText"]))
    return count_tokens(str(body["prompt"]))


def converse_response(reply: Reply, started: float) -> dict[str, Any]:
    """A Converse API response from a Nova-shaped reply."""
    return {
        "output": reply.body["output"],
        "stopReason": reply.body["stopReason"],
        "usage": reply.body["usage"],
        "metrics": {"latencyMs": max(1, math.ceil((time.monotonic() - started) * 1000))},
    }
