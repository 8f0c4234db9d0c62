"""Model ids, inference-profile ids and ARNs resolve to the right family adapter."""

from __future__ import annotations

import pytest

from bedrock_batch_nb.errors import BatchInputError, UnknownModelError
from bedrock_batch_nb.models import (
    INFERENCE_PROFILE_PREFIXES,
    AnthropicAdapter,
    LlamaAdapter,
    MistralAdapter,
    ModelAdapter,
    NovaAdapter,
    TitanEmbedAdapter,
    base_model_id,
    resolve_adapter,
    supported_families,
)

BASE_IDS: list[tuple[str, type[ModelAdapter]]] = [
    ("anthropic.claude-3-haiku-20240307-v1:0", AnthropicAdapter),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", AnthropicAdapter),
    ("anthropic.claude-sonnet-4-20250514-v1:0", AnthropicAdapter),
    ("amazon.titan-embed-text-v2:0", TitanEmbedAdapter),
    ("amazon.nova-micro-v1:0", NovaAdapter),
    ("amazon.nova-lite-v1:0", NovaAdapter),
    ("amazon.nova-pro-v1:0", NovaAdapter),
    ("meta.llama3-70b-instruct-v1:0", LlamaAdapter),
    ("meta.llama3-3-70b-instruct-v1:0", LlamaAdapter),
    ("mistral.mistral-large-2402-v1:0", MistralAdapter),
    ("mistral.mixtral-8x7b-instruct-v0:1", MistralAdapter),
]


@pytest.mark.parametrize(("model_id", "cls"), BASE_IDS)
def test_base_ids(model_id: str, cls: type[ModelAdapter]) -> None:
    adapter = resolve_adapter(model_id)
    assert type(adapter) is cls
    assert adapter.model_id == model_id
    assert adapter.base_id == model_id
    assert adapter.invocation_type == "InvokeModel"


@pytest.mark.parametrize("prefix", INFERENCE_PROFILE_PREFIXES)
@pytest.mark.parametrize(("model_id", "cls"), BASE_IDS[::3])
def test_inference_profile_prefixes(prefix: str, model_id: str, cls: type[ModelAdapter]) -> None:
    profile = f"{prefix}.{model_id}"
    assert base_model_id(profile) == model_id
    adapter = resolve_adapter(profile)
    assert type(adapter) is cls
    assert adapter.model_id == profile  # the job is submitted with the id as given


def test_expected_prefixes_listed() -> None:
    for prefix in ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"):
        assert prefix in INFERENCE_PROFILE_PREFIXES


def test_unlisted_geography_prefix_is_stripped_too() -> None:
    assert base_model_id("xy.anthropic.claude-3-haiku-20240307-v1:0") == (
        "anthropic.claude-3-haiku-20240307-v1:0"
    )


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/"
        "global.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/"
        "anthropic.claude-3-haiku-20240307-v1:0",
    ],
)
def test_arns(arn: str) -> None:
    assert base_model_id(arn) == "anthropic.claude-3-haiku-20240307-v1:0"
    assert isinstance(resolve_adapter(arn), AnthropicAdapter)


def test_base_ids_unchanged() -> None:
    for model_id, _ in BASE_IDS:
        assert base_model_id(model_id) == model_id
    assert base_model_id("  amazon.nova-lite-v1:0 ") == "amazon.nova-lite-v1:0"


def test_unknown_model_message() -> None:
    with pytest.raises(UnknownModelError) as info:
        resolve_adapter("cohere.command-r-v1:0")
    message = str(info.value)
    assert "'cohere.command-r-v1:0'" in message
    for family in supported_families():
        assert family.name in message
        for prefix in family.prefixes:
            assert prefix in message
    assert "us." in message
    assert isinstance(info.value, BatchInputError)


def test_unknown_model_under_converse_too() -> None:
    with pytest.raises(UnknownModelError, match="no adapter"):
        resolve_adapter("cohere.command-r-v1:0", "Converse")


def test_application_profile_and_provisioned_hints() -> None:
    with pytest.raises(UnknownModelError, match="application inference profile"):
        resolve_adapter("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc")
    with pytest.raises(UnknownModelError, match="Provisioned throughput"):
        resolve_adapter("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc")


@pytest.mark.parametrize("model_id", ["", "   "])
def test_empty_model_id(model_id: str) -> None:
    with pytest.raises(UnknownModelError, match="No model id"):
        resolve_adapter(model_id)


def test_bad_invocation_type() -> None:
    with pytest.raises(BatchInputError, match="invocation_type"):
        resolve_adapter("amazon.nova-lite-v1:0", "Invoke")


def test_supported_families() -> None:
    families = {f.family: f for f in supported_families()}
    assert set(families) == {"anthropic", "titan-embed", "nova", "llama", "mistral"}
    assert families["titan-embed"].kind == "embedding"
    assert families["anthropic"].prefixes == ("anthropic.claude",)
    assert all(f.kind == "text" for k, f in families.items() if k != "titan-embed")


def test_subclass_registers_itself() -> None:
    from bedrock_batch_nb.models import base

    class Demo(ModelAdapter):
        family = "demo-test"
        kind = "text"
        prefixes = ("demo.",)
        max_input_chars = 10

        def build_request(self, text, *, system, params):  # type: ignore[no-untyped-def]
            return {"t": text}

        def parse_response(self, body):  # type: ignore[no-untyped-def]
            raise ValueError

    try:
        assert isinstance(resolve_adapter("us.demo.model-v1:0"), Demo)
    finally:
        del base._REGISTRY["demo-test"]
    with pytest.raises(UnknownModelError):
        resolve_adapter("demo.model-v1:0")
