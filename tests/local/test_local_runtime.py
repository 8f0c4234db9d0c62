"""InvokeModel, Converse and CountTokens through boto3's bedrock-runtime client."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_batch_nb.local import REPLY_PREFIX

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"


def _invoke(runtime: Any, model: str, body: Any) -> dict[str, Any]:
    response = runtime.invoke_model(modelId=model, body=json.dumps(body))
    assert response["contentType"] == "application/json"
    result: dict[str, Any] = json.loads(response["body"].read())
    return result


@pytest.mark.parametrize(
    "model", [HAIKU, f"us.{HAIKU}", f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"]
)
def test_invoke_anthropic(runtime: Any, model: str) -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Tell me about {braces} 42"}]},
        ],
        "temperature": 0.3,
        "stop_sequences": ["\n\nHuman:"],
    }
    out = _invoke(runtime, model, body)
    assert out["content"][0]["text"] == REPLY_PREFIX + "Tell me about {braces} 42"
    assert out["type"] == "message" and out["stop_reason"] == "end_turn"
    assert out["usage"]["input_tokens"] > 0 and out["usage"]["output_tokens"] > 0
    assert _invoke(runtime, model, body)["content"] == out["content"]  # deterministic


def test_invoke_other_families(runtime: Any) -> None:
    nova = _invoke(runtime, "amazon.nova-micro-v1:0", {
        "messages": [{"role": "user", "content": [{"text": "nova text"}]}],
        "inferenceConfig": {"maxTokens": 10, "topP": 0.9},
    })  # fmt: skip
    assert "nova text" in nova["output"]["message"]["content"][0]["text"]
    assert nova["stopReason"] == "end_turn" and nova["usage"]["totalTokens"] > 0
    llama = _invoke(runtime, "meta.llama3-1-8b-instruct-v1:0", {"prompt": "llama text"})
    assert "llama text" in llama["generation"]
    mistral = _invoke(runtime, "mistral.mistral-large-2402-v1:0", {"prompt": "mistral text"})
    assert "mistral text" in mistral["outputs"][0]["text"]


@pytest.mark.parametrize("dims", [256, 512, 1024, None])
def test_embeddings_are_unit_length_right_size_and_deterministic(
    runtime: Any, dims: int | None
) -> None:
    body: dict[str, Any] = {"inputText": "embed me"}
    if dims is not None:
        body["dimensions"] = dims
    first = _invoke(runtime, TITAN, body)
    vector = first["embedding"]
    assert len(vector) == (dims or 1024)
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)
    assert _invoke(runtime, TITAN, body)["embedding"] == vector
    other = _invoke(runtime, TITAN, {**body, "inputText": "something else"})["embedding"]
    assert other != vector
    assert first["inputTextTokenCount"] == 2


def test_embedding_types_and_no_normalize(runtime: Any) -> None:
    out = _invoke(runtime, TITAN, {"inputText": "x y z", "normalize": False,
                                    "embeddingTypes": ["float", "binary"]})  # fmt: skip
    assert not math.isclose(math.sqrt(sum(x * x for x in out["embedding"])), 1.0)
    assert set(out["embeddingsByType"]) == {"float", "binary"}
    assert set(out["embeddingsByType"]["binary"]) <= {0, 1}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (HAIKU, {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        (HAIKU, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 0,
                 "messages": [{"role": "user", "content": "x"}]}),
        (HAIKU, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
                 "messages": [{"role": "assistant", "content": "x"}]}),
        (HAIKU, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "temperature": 2,
                 "messages": [{"role": "user", "content": "x"}]}),
        (HAIKU, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "foo": 1,
                 "messages": [{"role": "user", "content": "x"}]}),
        (TITAN, {"inputText": ""}),
        (TITAN, {"inputText": "x" * 50_001}),
        (TITAN, {"inputText": "x", "normalize": "yes"}),
        ("amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": "plain string"}]}),
        ("amazon.nova-lite-v1:0", {"schemaVersion": "messages-v2",
                                   "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
        ("meta.llama3-1-8b-instruct-v1:0", {"prompt": "x", "max_gen_len": 0}),
        ("mistral.mistral-7b-instruct-v0:2", {"prompt": 5}),
        (HAIKU, "not an object"),
    ],
)  # fmt: skip
def test_invoke_rejects_bad_bodies(runtime: Any, model: str, body: Any) -> None:
    with pytest.raises(ClientError) as exc:
        _invoke(runtime, model, body)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_invoke_rejects_unknown_model_and_bad_json(runtime: Any) -> None:
    with pytest.raises(ClientError) as exc:
        _invoke(runtime, "acme.nothing-v1:0", {"prompt": "x"})
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as exc:
        runtime.invoke_model(modelId=HAIKU, body=b"{not json")
    assert exc.value.response["Error"]["Code"] == "ValidationException"


def test_converse(runtime: Any, lb: Any) -> None:
    response = runtime.converse(
        modelId="us.amazon.nova-lite-v1:0",
        system=[{"text": "be nice"}],
        messages=[{"role": "user", "content": [{"text": "converse text"}]}],
        inferenceConfig={"maxTokens": 20, "temperature": 0.5},
    )
    assert response["output"]["message"]["role"] == "assistant"
    assert response["output"]["message"]["content"][0]["text"] == REPLY_PREFIX + "converse text"
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert response["metrics"]["latencyMs"] >= 1
    claude = runtime.converse(
        modelId=HAIKU, messages=[{"role": "user", "content": [{"text": "c"}]}]
    )
    assert claude["output"]["message"]["content"][0]["text"] == REPLY_PREFIX + "c"
    with pytest.raises(ClientError) as exc:
        runtime.converse(modelId=TITAN, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as exc:
        runtime.converse(
            modelId=HAIKU, messages=[{"role": "assistant", "content": [{"text": "x"}]}]
        )
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert lb.stats.converse_calls == 4


def test_count_tokens(runtime: Any) -> None:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "messages": [{"role": "user", "content": "one two three"}]}  # fmt: skip
    counted = runtime.count_tokens(
        modelId=HAIKU, input={"invokeModel": {"body": json.dumps(body).encode()}}
    )
    assert counted["inputTokens"] == _invoke(runtime, HAIKU, body)["usage"]["input_tokens"] == 3
    conv = runtime.count_tokens(
        modelId=HAIKU,
        input={"converse": {"messages": [{"role": "user", "content": [{"text": "a b"}]}]}},
    )
    assert conv["inputTokens"] == 2
