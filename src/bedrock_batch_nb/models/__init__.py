"""One adapter per model family: the request body a batch record carries and how its
response body is read.

=================  ==========================================  =========
module             models (base id prefixes)                   kind
=================  ==========================================  =========
``anthropic``      ``anthropic.claude*``                       text
``titan_embed``    ``amazon.titan-embed-text-v2*``             embedding
``nova``           ``amazon.nova-micro/lite/pro/premier/2-lite``  text
``llama``          ``meta.llama3*``                            text
``mistral``        ``mistral.mistral-*``, ``mistral.mixtral-*``  text
``converse``       any text model above, ``invocation_type="Converse"``
=================  ==========================================  =========

Adding a family: a module with one :class:`ModelAdapter` subclass that sets ``prefixes``
(it registers itself) and its import below.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BatchInputError, UnknownModelError
from . import anthropic, llama, mistral, nova, titan_embed  # noqa: F401  (registration)
from .anthropic import AnthropicAdapter
from .base import (
    INFERENCE_PROFILE_PREFIXES,
    InferenceParams,
    InvocationType,
    Kind,
    ModelAdapter,
    ModelOutput,
    base_model_id,
    model_resource,
    registered_adapters,
)
from .converse import ConverseAdapter
from .llama import LlamaAdapter
from .mistral import MistralAdapter
from .nova import NovaAdapter
from .titan_embed import TitanEmbedAdapter

__all__ = [
    "INFERENCE_PROFILE_PREFIXES",
    "AnthropicAdapter",
    "ConverseAdapter",
    "FamilyInfo",
    "InferenceParams",
    "InvocationType",
    "Kind",
    "LlamaAdapter",
    "MistralAdapter",
    "ModelAdapter",
    "ModelOutput",
    "NovaAdapter",
    "TitanEmbedAdapter",
    "base_model_id",
    "model_resource",
    "resolve_adapter",
    "supported_families",
]


@dataclass(frozen=True)
class FamilyInfo:
    """One supported family, for docs and the UI."""

    family: str
    name: str
    prefixes: tuple[str, ...]
    kind: Kind


def supported_families() -> list[FamilyInfo]:
    """Every family this package can build requests for (Converse serves the text ones)."""
    return [
        FamilyInfo(cls.family, cls.display_name, cls.prefixes, cls.kind)
        for cls in registered_adapters()
    ]


def _families_text() -> str:
    return "; ".join(
        f"{f.name} ({', '.join(p + '*' for p in f.prefixes)})" for f in supported_families()
    )


def resolve_adapter(model_id: str, invocation_type: str = "InvokeModel") -> ModelAdapter:
    """The adapter for ``model_id`` (a base id, a cross-Region inference profile id such as
    ``us.anthropic.claude-...``, or a foundation-model / inference-profile ARN).

    Raises :class:`UnknownModelError` naming the supported families when none matches.
    """
    if invocation_type not in ("InvokeModel", "Converse"):
        raise BatchInputError(
            f"invocation_type must be 'InvokeModel' or 'Converse', not {invocation_type!r}."
        )
    if not isinstance(model_id, str) or not model_id.strip():
        raise UnknownModelError(f"No model id given. Supported families: {_families_text()}.")
    base = base_model_id(model_id)
    scored = [(cls.match_length(base), cls) for cls in registered_adapters()]
    best = max(scored, key=lambda sc: sc[0], default=(0, None))
    cls = best[1]
    if best[0] == 0 or cls is None:
        hint = ""
        if ":application-inference-profile/" in model_id:
            hint = (
                " An application inference profile ARN does not say which model it serves: "
                "pass the foundation model id or its cross-Region profile id instead."
            )
        elif ":provisioned-model/" in model_id:
            hint = " Provisioned throughput models cannot run batch jobs."
        raise UnknownModelError(
            f"Unknown model {model_id!r}: no adapter for it.{hint} Supported families: "
            f"{_families_text()}. Cross-Region inference profile ids "
            f"({', '.join(p + '.' for p in INFERENCE_PROFILE_PREFIXES)}) and ARNs of these "
            "models work too."
        )
    adapter = cls(model_id)
    if invocation_type == "Converse":
        if adapter.kind != "text":
            raise BatchInputError(
                f"{model_id} is an embedding model: the Converse format serves text models "
                "only. Use invocation_type='InvokeModel'."
            )
        return ConverseAdapter(model_id, adapter)
    return adapter
