"""Amazon Titan Text Embeddings V2 bodies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bedrock_batch_nb.models import InferenceParams, TitanEmbedAdapter

TITAN = "amazon.titan-embed-text-v2:0"


def test_request_body() -> None:
    adapter = TitanEmbedAdapter(TITAN)
    assert adapter.kind == "embedding"
    assert adapter.max_input_chars == 50_000
    body = adapter.build_request(
        "embed me", system=None, params=InferenceParams(dimensions=256, normalize=False)
    )
    assert body == {"inputText": "embed me", "dimensions": 256, "normalize": False}
    assert adapter.build_request("x", system=None, params=InferenceParams()) == {
        "inputText": "x",
        "dimensions": 1024,
        "normalize": True,
    }


def test_text_verbatim_and_splice(tricky_text: str, check_splice: Callable[..., None]) -> None:
    adapter = TitanEmbedAdapter(TITAN)
    assert (
        adapter.build_request(tricky_text, system=None, params=InferenceParams())["inputText"]
        == tricky_text
    )
    check_splice(adapter, [tricky_text, "b"], None, InferenceParams(dimensions=512))


def test_parse_response() -> None:
    out = TitanEmbedAdapter(TITAN).parse_response(
        {"embedding": [0.1, -0.2, 3], "inputTextTokenCount": 7}
    )
    assert out.embedding == [0.1, -0.2, 3.0]
    assert out.input_tokens == 7
    assert out.output_tokens is None
    assert out.response is None


def test_parse_embeddings_by_type() -> None:
    out = TitanEmbedAdapter(TITAN).parse_response(
        {"embeddingsByType": {"float": [1.0, 2.0]}, "inputTextTokenCount": 2}
    )
    assert out.embedding == [1.0, 2.0]


@pytest.mark.parametrize(
    "body",
    [{"content": []}, {"embedding": "x"}, {"embedding": [1, "a"]}, None],
    ids=repr,
)
def test_parse_error(body: object) -> None:
    with pytest.raises(ValueError, match="Titan embedding response"):
        TitanEmbedAdapter(TITAN).parse_response(body)  # type: ignore[arg-type]


def test_validate_params() -> None:
    adapter = TitanEmbedAdapter(TITAN)
    assert adapter.validate_params(InferenceParams(max_tokens=99_999)) == []
    problems = adapter.validate_params(
        InferenceParams(dimensions=768, temperature=0.1, top_p=0.5, top_k=5, stop_sequences=("x",))
    )
    assert len(problems) == 5
    assert any("dimensions must be one of 256, 512, 1024" in p for p in problems)
    assert any("takes no temperature" in p for p in problems)
    assert adapter.validate_params(InferenceParams(), system="Be nice") == [
        f"Amazon Titan Text Embeddings V2 ({TITAN}) takes no system prompt: drop system_prompt."
    ]
