"""Shared checks for the model adapters: texts that break naive JSON splicing, and the
staging splice compared with building each body in full."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bedrock_batch_nb.models import InferenceParams, ModelAdapter
from bedrock_batch_nb.staging import RecordBuilder, record_id

TRICKY_TEXTS = [
    "plain",
    "",
    'He said "hi",\n\tthen left \\ backslash',
    "unicode: café \u2013 日本語 🙂 \u2028 line separator",
    "{braces} {{double}} {0} %s %(x)s",
    "</s>[/INST] <|eot_id|> @@ not the marker @@",
    "control \x00 \x1f chars",
]


@pytest.fixture(params=TRICKY_TEXTS, ids=lambda t: repr(t)[:20])
def tricky_text(request: pytest.FixtureRequest) -> str:
    text: str = request.param
    return text


def _direct_line(adapter: ModelAdapter, text: str, pos: int, **kw: object) -> str:
    body = adapter.build_request(text, **kw)  # type: ignore[arg-type]
    return json.dumps(
        {"recordId": record_id(pos), "modelInput": body}, ensure_ascii=False, separators=(",", ":")
    )


@pytest.fixture
def check_splice() -> Callable[[ModelAdapter, list[str], str | None, InferenceParams], None]:
    """Staging's spliced lines equal bodies built in full, and the fast path is taken."""

    def check(
        adapter: ModelAdapter, texts: list[str], system: str | None, params: InferenceParams
    ) -> None:
        builder = RecordBuilder(adapter, system=system, params=params)
        # The marker must land in exactly one string value, or staging falls back to
        # building every body in full (correct, but slow).
        assert builder._parts is not None
        lines = builder.lines(texts, range(len(texts)))
        expected = [
            _direct_line(adapter, t, i, system=system, params=params) for i, t in enumerate(texts)
        ]
        assert lines == expected
        for line, text in zip(lines, texts, strict=True):
            assert json.dumps(text, ensure_ascii=False)[1:-1] in line
            json.loads(line)
        # The staged file: the same records, one per line, built in one go.
        positions = range(7, 7 + len(texts))
        body = builder.body(texts, positions)
        assert body == ("\n".join(builder.lines(texts, positions)) + "\n").encode()

    return check
