"""What every model adapter is: parameters in, a request body out; a response body in, text
or an embedding out.

One family of models = one subclass in its own module.  A subclass that names ``prefixes``
registers itself (``__init_subclass__``); :func:`bedrock_batch_nb.models.resolve_adapter`
picks the one whose prefix matches the model id.  Limits that differ between models of a
family go in ``model_limits`` (longest matching prefix wins).
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

Kind = Literal["text", "embedding"]
InvocationType = Literal["InvokeModel", "Converse"]

CHARS_PER_TOKEN = 3
"""Characters per token assumed when a token limit is turned into a character limit.

Deliberately low (English prose averages about 4), so the pre-flight length check only
rejects texts that cannot fit; the model still has the last word per record."""


@dataclass(frozen=True)
class InferenceParams:
    """Inference parameters, in one vocabulary; each adapter maps them to its field names."""

    max_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    dimensions: int = 1024
    """Embedding size (embedding models)."""
    normalize: bool = True
    """Unit-length embeddings (embedding models)."""


@dataclass(frozen=True)
class ModelOutput:
    """What one response body holds."""

    response: str | None = None
    embedding: list[float] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class ModelLimits:
    """Per-model limits inside a family, chosen by the longest matching id prefix."""

    prefix: str
    max_input_chars: int
    max_output_tokens: int


# ---- model ids ----------------------------------------------------------------------------

INFERENCE_PROFILE_PREFIXES = ("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global")
"""Geographic prefixes of cross-Region (system-defined) inference profile ids, e.g.
``us.anthropic.claude-3-haiku-20240307-v1:0``.  Any other short lowercase prefix in front
of a ``provider.model`` id is stripped too, so a new geography needs no code change."""

_PROFILE_PREFIX_RE = re.compile(r"^[a-z]{2,8}(?:-[a-z]{2,8})?\.(?=[a-z0-9-]+\.)")
_ARN_RE = re.compile(
    r"^arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]*:(?:[0-9]{12})?:"
    r"(?P<resource>[a-z-]+)/(?P<id>.+)$"
)


def base_model_id(model_id: str) -> str:
    """The foundation model id behind a model id, inference-profile id or ARN.

    ``us.anthropic.claude-3-haiku-20240307-v1:0``,
    ``arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0`` and
    ``arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-...``
    all give ``anthropic.claude-3-haiku-20240307-v1:0``.  Other ARNs (application inference
    profiles, provisioned or custom models) name no model and come back unchanged.
    """
    mid = model_id.strip()
    arn = _ARN_RE.match(mid)
    if arn is not None:
        if arn["resource"] not in ("foundation-model", "inference-profile"):
            return mid
        mid = arn["id"]
    return _PROFILE_PREFIX_RE.sub("", mid, count=1)


def model_resource(model_id: str) -> str:
    """What kind of Bedrock resource ``model_id`` names: ``"foundation-model"`` (a model id
    or its ARN), ``"inference-profile"`` (a cross-Region profile id such as
    ``us.anthropic.claude-...``, or its ARN), or another ARN's resource type
    (``"application-inference-profile"``, ``"custom-model"``, ...)."""
    mid = model_id.strip()
    arn = _ARN_RE.match(mid)
    if arn is not None:
        return str(arn["resource"])
    return "inference-profile" if _PROFILE_PREFIX_RE.match(mid) else "foundation-model"


# ---- the registry -------------------------------------------------------------------------

_REGISTRY: dict[str, type[ModelAdapter]] = {}


def registered_adapters() -> list[type[ModelAdapter]]:
    """Every registered family adapter, in registration order."""
    return list(_REGISTRY.values())


class ModelAdapter(abc.ABC):
    """Builds request bodies and parses response bodies for one model family.

    Class attributes describe the family; an instance is made for one model id and may
    narrow ``max_input_chars`` and ``max_output_tokens`` from ``model_limits``.
    """

    family: str
    """Short family name, e.g. ``"anthropic"``."""
    display_name: ClassVar[str] = ""
    kind: Kind
    invocation_type: InvocationType = "InvokeModel"
    prefixes: ClassVar[tuple[str, ...]] = ()
    """Base model id prefixes (after inference-profile prefixes and ARNs are stripped)."""
    max_input_chars: int
    """Longest text accepted before staging (a pre-flight check; see ``CHARS_PER_TOKEN``)."""
    max_output_tokens: int = 4096
    model_limits: ClassVar[tuple[ModelLimits, ...]] = ()

    supports_system_prompt: ClassVar[bool] = True
    supports_temperature: ClassVar[bool] = True
    supports_top_p: ClassVar[bool] = True
    supports_top_k: ClassVar[bool] = True
    supports_stop_sequences: ClassVar[bool] = True
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    top_k_range: ClassVar[tuple[int, int]] = (0, 500)
    max_stop_sequences: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "prefixes" in cls.__dict__ and cls.prefixes:
            known = _REGISTRY.get(cls.family)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"Model family {cls.family!r} is registered twice.")
            _REGISTRY[cls.family] = cls

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.base_id = base_model_id(model_id)
        limits = self.limits_for(self.base_id)
        if limits is not None:
            self.max_input_chars = limits.max_input_chars
            self.max_output_tokens = limits.max_output_tokens

    # ---- family selection ----------------------------------------------------------------

    @classmethod
    def match_length(cls, base_id: str) -> int:
        """Length of the longest prefix of ``base_id`` this family claims (0: none)."""
        return max((len(p) for p in cls.prefixes if base_id.startswith(p)), default=0)

    @classmethod
    def matches(cls, base_id: str) -> bool:
        return cls.match_length(base_id) > 0

    @classmethod
    def limits_for(cls, base_id: str) -> ModelLimits | None:
        found = [m for m in cls.model_limits if base_id.startswith(m.prefix)]
        return max(found, key=lambda m: len(m.prefix)) if found else None

    # ---- the two bodies ------------------------------------------------------------------

    @abc.abstractmethod
    def build_request(
        self, text: str, *, system: str | None, params: InferenceParams
    ) -> dict[str, Any]:
        """The request body for one text.  ``text`` appears verbatim, once, inside one JSON
        string value (staging splices each record's text into a body built once)."""

    @abc.abstractmethod
    def parse_response(self, body: Mapping[str, Any]) -> ModelOutput:
        """Read a response body; raise ``ValueError`` saying what is wrong if it is not one."""

    # ---- parameter checks ----------------------------------------------------------------

    def validate_params(self, params: InferenceParams, *, system: str | None = None) -> list[str]:
        """Problems with ``params`` (and ``system``) for this model; empty when all is well."""
        p: list[str] = []
        name = f"{self.display_name or self.family} ({self.model_id})"
        if self.kind == "text":
            if not _is_int(params.max_tokens) or params.max_tokens < 1:
                p.append(
                    f"max_tokens must be a whole number of at least 1, not {params.max_tokens!r}."
                )
            elif params.max_tokens > self.max_output_tokens:
                p.append(
                    f"max_tokens={params.max_tokens:,} is more than {name} can produce "
                    f"({self.max_output_tokens:,}): lower it."
                )
        lo, hi = self.temperature_range
        _check_number(p, name, "temperature", params.temperature, self.supports_temperature, lo, hi)
        _check_number(p, name, "top_p", params.top_p, self.supports_top_p, 0.0, 1.0)
        if params.top_k is not None:
            klo, khi = self.top_k_range
            if not self.supports_top_k:
                p.append(f"{name} takes no top_k: drop it.")
            elif not _is_int(params.top_k) or not klo <= params.top_k <= khi:
                p.append(f"top_k must be a whole number from {klo} to {khi}, not {params.top_k!r}.")
        stops = params.stop_sequences
        if stops:
            if not self.supports_stop_sequences:
                p.append(f"{name} takes no stop_sequences: drop them.")
            else:
                if any(not isinstance(s, str) or not s for s in stops):
                    p.append("stop_sequences must be non-empty strings.")
                if self.max_stop_sequences is not None and len(stops) > self.max_stop_sequences:
                    p.append(
                        f"{name} takes at most {self.max_stop_sequences} stop_sequences, "
                        f"not {len(stops)}."
                    )
        if system and not self.supports_system_prompt:
            p.append(f"{name} takes no system prompt: drop system_prompt.")
        return p

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r})"


# ---- helpers for adapters ----------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_number(
    problems: list[str],
    model: str,
    field: str,
    value: float | None,
    supported: bool,
    lo: float,
    hi: float,
) -> None:
    if value is None:
        return
    if not supported:
        problems.append(f"{model} takes no {field}: drop it.")
    elif (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or math.isnan(value)
        or not lo <= value <= hi
    ):
        problems.append(f"{field} must be a number from {lo:g} to {hi:g}, not {value!r}.")


def sampling(
    params: InferenceParams, *, top_k: bool = True, stop_key: str | None = "stop_sequences"
) -> dict[str, Any]:
    """The sampling keys that are set, as the snake_case InvokeModel bodies (Claude, Llama,
    Mistral) name them: temperature, top_p, top_k, and the stop sequences under
    ``stop_key``."""
    keys: dict[str, Any] = {}
    if params.temperature is not None:
        keys["temperature"] = params.temperature
    if params.top_p is not None:
        keys["top_p"] = params.top_p
    if top_k and params.top_k is not None:
        keys["top_k"] = params.top_k
    if stop_key is not None and params.stop_sequences:
        keys[stop_key] = list(params.stop_sequences)
    return keys


def expect_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected {what} to be a JSON object, got {type(value).__name__}")
    return value


def expect_key(body: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in body:
        keys = ", ".join(sorted(map(str, body))) or "none"
        raise ValueError(f"{what} has no {key!r} (keys: {keys})")
    return body[key]


def optional_int(value: Any) -> int | None:
    """A token count, or None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def messages_output(body: Mapping[str, Any], what: str) -> ModelOutput:
    """Parse the ``{"output": {"message": {"content": [{"text"}]}}, "usage": {...}}`` shape
    shared by Converse responses and Amazon Nova's native responses."""
    body = expect_mapping(body, what)
    output = expect_mapping(expect_key(body, "output", what), f"{what} 'output'")
    message = expect_mapping(expect_key(output, "message", f"{what} 'output'"), "'message'")
    content = expect_key(message, "content", f"{what} 'output.message'")
    if not isinstance(content, list):
        raise ValueError(f"{what} 'output.message.content' is not a list")
    text = "".join(
        block["text"]
        for block in content
        if isinstance(block, Mapping) and isinstance(block.get("text"), str)
    )
    usage = body.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    return ModelOutput(
        response=text,
        input_tokens=optional_int(usage.get("inputTokens")),
        output_tokens=optional_int(usage.get("outputTokens")),
    )
