"""Per-family checks of an InvokeModel body (and of a Converse body), written from the docs.

Each check raises :class:`SchemaError` with a message worded like Bedrock's own
("Malformed input request: #/messages/0: ..., please reformat your input and try again.").
The checks are independent of the engine's adapters on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

FAMILIES = ("anthropic", "titan-embed", "nova", "llama", "mistral")
CONVERSE = "converse"

MAX_EMBED_CHARS = 50_000
TITAN_DIMENSIONS = (256, 512, 1024)


class SchemaError(ValueError):
    """A request body that does not match its family's schema."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"Malformed input request: {path}: {problem}, please reformat your input and try again."
        )


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SchemaError(path, f"expected type: JSONObject, found: {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "JSONArray"
    return "JSONObject"


def _keys(body: Mapping[str, Any], path: str, required: tuple[str, ...], allowed: set[str]) -> None:
    for key in required:
        if key not in body:
            raise SchemaError(path, f"required key [{key}] not found")
    for key in body:
        if key not in allowed:
            raise SchemaError(path, f"extraneous key [{key}] is not permitted")


def _str(value: Any, path: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SchemaError(path, f"expected type: String, found: {_type_name(value)}")
    if non_empty and not value.strip():
        raise SchemaError(path, "expected minLength: 1, actual: 0")
    return value


def _int(value: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(path, f"expected type: Integer, found: {_type_name(value)}")
    if lo is not None and value < lo:
        raise SchemaError(path, f"{value} is not greater or equal to {lo}")
    if hi is not None and value > hi:
        raise SchemaError(path, f"{value} is not less or equal to {hi}")
    return value


def _num(value: Any, path: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(path, f"expected type: Number, found: {_type_name(value)}")
    if lo is not None and value < lo:
        raise SchemaError(path, f"{value} is not greater or equal to {lo}")
    if hi is not None and value > hi:
        raise SchemaError(path, f"{value} is not less or equal to {hi}")
    return float(value)


def _list(value: Any, path: str, *, min_items: int = 0) -> list[Any]:
    if not isinstance(value, list):
        raise SchemaError(path, f"expected type: JSONArray, found: {_type_name(value)}")
    if len(value) < min_items:
        raise SchemaError(path, f"expected minimum item count: {min_items}, found: {len(value)}")
    return value


def _str_list(value: Any, path: str) -> list[str]:
    items = _list(value, path)
    for i, item in enumerate(items):
        _str(item, f"{path}/{i}")
    return items


# --- Anthropic Claude Messages -------------------------------------------------------------

_ANTHROPIC_KEYS = {
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
}


def check_anthropic(body: Any) -> None:
    b = _obj(body, "#")
    _keys(b, "#", ("anthropic_version", "max_tokens", "messages"), _ANTHROPIC_KEYS)
    if b["anthropic_version"] != "bedrock-2023-05-31":
        raise SchemaError("#/anthropic_version", "bedrock-2023-05-31 is the only valid version")
    _int(b["max_tokens"], "#/max_tokens", lo=1)
    messages = _list(b["messages"], "#/messages", min_items=1)
    for i, message in enumerate(messages):
        path = f"#/messages/{i}"
        m = _obj(message, path)
        _keys(m, path, ("role", "content"), {"role", "content"})
        if m["role"] not in ("user", "assistant"):
            raise SchemaError(f"{path}/role", f"{m['role']} is not a valid enum value")
        _anthropic_content(m["content"], f"{path}/content")
    if messages[0]["role"] != "user":
        raise SchemaError("#/messages/0/role", "the first message must use the user role")
    if "system" in b:
        system = b["system"]
        if not isinstance(system, str):
            _anthropic_content(system, "#/system")
    if "temperature" in b:
        _num(b["temperature"], "#/temperature", 0.0, 1.0)
    if "top_p" in b:
        _num(b["top_p"], "#/top_p", 0.0, 1.0)
    if "top_k" in b:
        _int(b["top_k"], "#/top_k", lo=0)
    if "stop_sequences" in b:
        _str_list(b["stop_sequences"], "#/stop_sequences")


def _anthropic_content(content: Any, path: str) -> None:
    if isinstance(content, str):
        return
    blocks = _list(content, path, min_items=1)
    for j, block in enumerate(blocks):
        bpath = f"{path}/{j}"
        blk = _obj(block, bpath)
        if "type" not in blk:
            raise SchemaError(bpath, "required key [type] not found")
        if blk["type"] == "text":
            _keys(blk, bpath, ("type", "text"), {"type", "text", "cache_control"})
            _str(blk["text"], f"{bpath}/text")
        elif blk["type"] not in ("image", "document", "tool_use", "tool_result"):
            raise SchemaError(f"{bpath}/type", f"{blk['type']} is not a valid enum value")


def anthropic_texts(body: Mapping[str, Any]) -> tuple[list[str], str]:
    """All prompt texts (system first) and the text of the last user message."""
    texts: list[str] = []
    system = body.get("system")
    if isinstance(system, str):
        texts.append(system)
    elif isinstance(system, list):
        texts.extend(_block_texts(system, "text"))
    last_user = ""
    for message in body.get("messages", []):
        content = message.get("content")
        parts = [content] if isinstance(content, str) else _block_texts(content or [], "text")
        texts.extend(parts)
        if message.get("role") == "user":
            last_user = "\n".join(parts)
    return texts, last_user


def _block_texts(blocks: list[Any], key: str) -> list[str]:
    return [
        block[key]
        for block in blocks
        if isinstance(block, Mapping) and isinstance(block.get(key), str)
    ]


# --- Amazon Titan Text Embeddings V2 --------------------------------------------------------


def check_titan_embed(body: Any) -> None:
    b = _obj(body, "#")
    _keys(b, "#", ("inputText",), {"inputText", "dimensions", "normalize", "embeddingTypes"})
    text = _str(b["inputText"], "#/inputText", non_empty=True)
    if len(text) > MAX_EMBED_CHARS:
        raise SchemaError(
            "#/inputText", f"expected maxLength: {MAX_EMBED_CHARS}, actual: {len(text)}"
        )
    if "dimensions" in b:
        dims = _int(b["dimensions"], "#/dimensions")
        if dims not in TITAN_DIMENSIONS:
            raise SchemaError("#/dimensions", f"{dims} is not a valid enum value")
    if "normalize" in b and not isinstance(b["normalize"], bool):
        raise SchemaError(
            "#/normalize", f"expected type: Boolean, found: {_type_name(b['normalize'])}"
        )
    if "embeddingTypes" in b:
        types = _str_list(b["embeddingTypes"], "#/embeddingTypes")
        for i, kind in enumerate(types):
            if kind not in ("float", "binary"):
                raise SchemaError(f"#/embeddingTypes/{i}", f"{kind} is not a valid enum value")


# --- Amazon Nova (messages-v1) and Converse ------------------------------------------------

_NOVA_INFERENCE_KEYS = {
    "maxTokens",
    "max_new_tokens",
    "temperature",
    "topP",
    "top_p",
    "topK",
    "top_k",
    "stopSequences",
    "reasoningConfig",
}
_CONVERSE_INFERENCE_KEYS = {"maxTokens", "temperature", "topP", "stopSequences"}


def check_nova(body: Any) -> None:
    b = _obj(body, "#")
    allowed = {"schemaVersion", "system", "messages", "inferenceConfig", "toolConfig"}
    _keys(b, "#", ("messages",), allowed)
    if "schemaVersion" in b and b["schemaVersion"] != "messages-v1":
        raise SchemaError("#/schemaVersion", f"{b['schemaVersion']} is not a valid enum value")
    _check_messages(b, roles=("user", "assistant"))
    if "inferenceConfig" in b:
        _check_inference(b["inferenceConfig"], _NOVA_INFERENCE_KEYS)


def check_converse(body: Any) -> None:
    """A Converse request body (batch modelInvocationType "Converse", or the Converse API)."""
    b = _obj(body, "#")
    allowed = {
        "messages",
        "system",
        "inferenceConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "guardrailConfig",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
        "toolConfig",
    }
    _keys(b, "#", ("messages",), allowed)
    _check_messages(b, roles=("user", "assistant"))
    if "inferenceConfig" in b:
        _check_inference(b["inferenceConfig"], _CONVERSE_INFERENCE_KEYS)


def _check_messages(b: Mapping[str, Any], roles: tuple[str, ...]) -> None:
    messages = _list(b["messages"], "#/messages", min_items=1)
    for i, message in enumerate(messages):
        path = f"#/messages/{i}"
        m = _obj(message, path)
        _keys(m, path, ("role", "content"), {"role", "content"})
        if m["role"] not in roles:
            raise SchemaError(f"{path}/role", f"{m['role']} is not a valid enum value")
        blocks = _list(m["content"], f"{path}/content", min_items=1)
        for j, block in enumerate(blocks):
            blk = _obj(block, f"{path}/content/{j}")
            if "text" in blk:
                _str(blk["text"], f"{path}/content/{j}/text")
            elif not blk:
                raise SchemaError(f"{path}/content/{j}", "content block must not be empty")
    if messages[0]["role"] != "user":
        raise SchemaError("#/messages/0/role", "the first message must use the user role")
    if "system" in b:
        system = _list(b["system"], "#/system")
        for i, block in enumerate(system):
            blk = _obj(block, f"#/system/{i}")
            if "text" in blk:
                _str(blk["text"], f"#/system/{i}/text", non_empty=True)


def _check_inference(value: Any, allowed: set[str]) -> None:
    cfg = _obj(value, "#/inferenceConfig")
    _keys(cfg, "#/inferenceConfig", (), allowed)
    for key in ("maxTokens", "max_new_tokens"):
        if key in cfg:
            _int(cfg[key], f"#/inferenceConfig/{key}", lo=1)
    if "temperature" in cfg:
        _num(cfg["temperature"], "#/inferenceConfig/temperature", 0.0, 1.0)
    for key in ("topP", "top_p"):
        if key in cfg:
            _num(cfg[key], f"#/inferenceConfig/{key}", 0.0, 1.0)
    for key in ("topK", "top_k"):
        if key in cfg:
            _int(cfg[key], f"#/inferenceConfig/{key}", lo=0)
    if "stopSequences" in cfg:
        _str_list(cfg["stopSequences"], "#/inferenceConfig/stopSequences")


def message_texts(body: Mapping[str, Any]) -> tuple[list[str], str]:
    """Texts of a Nova / Converse body (system first) and the last user message's text."""
    texts = _block_texts(list(body.get("system") or []), "text")
    last_user = ""
    for message in body.get("messages", []):
        parts = _block_texts(list(message.get("content") or []), "text")
        texts.extend(parts)
        if message.get("role") == "user":
            last_user = "\n".join(parts)
    return texts, last_user


# --- Meta Llama and Mistral (text completion) ----------------------------------------------


def check_llama(body: Any) -> None:
    b = _obj(body, "#")
    allowed = {"prompt", "max_gen_len", "temperature", "top_p", "images"}
    _keys(b, "#", ("prompt",), allowed)
    _str(b["prompt"], "#/prompt", non_empty=True)
    if "max_gen_len" in b:
        _int(b["max_gen_len"], "#/max_gen_len", 1, 2048)
    if "temperature" in b:
        _num(b["temperature"], "#/temperature", 0.0, 1.0)
    if "top_p" in b:
        _num(b["top_p"], "#/top_p", 0.0, 1.0)


def check_mistral(body: Any) -> None:
    b = _obj(body, "#")
    allowed = {"prompt", "max_tokens", "temperature", "top_p", "top_k", "stop"}
    _keys(b, "#", ("prompt",), allowed)
    _str(b["prompt"], "#/prompt", non_empty=True)
    if "max_tokens" in b:
        _int(b["max_tokens"], "#/max_tokens", lo=1)
    if "temperature" in b:
        _num(b["temperature"], "#/temperature", 0.0, 1.0)
    if "top_p" in b:
        _num(b["top_p"], "#/top_p", 0.0, 1.0)
    if "top_k" in b:
        _int(b["top_k"], "#/top_k", 0, 200)
    if "stop" in b:
        _str_list(b["stop"], "#/stop")


CHECKS: dict[str, Callable[[Any], None]] = {
    "anthropic": check_anthropic,
    "titan-embed": check_titan_embed,
    "nova": check_nova,
    "llama": check_llama,
    "mistral": check_mistral,
    CONVERSE: check_converse,
}


def check_body(family: str, body: Any) -> None:
    """Raise :class:`SchemaError` when ``body`` is not a valid request for ``family``."""
    CHECKS[family](body)
