"""Prompt templates: plain column placeholders only, literal braces, fast rendering, and
the registry of named prompts."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from bedrock_batch_nb.errors import BatchInputError
from bedrock_batch_nb.prompts import (
    NamedPrompt,
    PromptTemplate,
    get_prompt,
    list_prompts,
    register_prompt,
    str_array,
    text_array,
    text_lengths,
    unregister_prompt,
)


def test_fields_unique_in_order_of_first_appearance() -> None:
    t = PromptTemplate("Q: {question}\nC: {context}\nAgain: {question} {my col} {_x1}")
    assert t.fields == ("question", "context", "my col", "_x1")
    assert t.template == "Q: {question}\nC: {context}\nAgain: {question} {my col} {_x1}"


def test_render() -> None:
    t = PromptTemplate("Tell me a joke about {topic} in less than {n} words.")
    assert (
        t.render({"topic": "cats", "n": 50}) == "Tell me a joke about cats in less than 50 words."
    )
    assert PromptTemplate("no fields").render({}) == "no fields"
    assert PromptTemplate("{a}{a}").render({"a": None}) == "NoneNone"


def test_render_missing_value() -> None:
    with pytest.raises(BatchInputError, match="'topic'"):
        PromptTemplate("{topic}").render({"other": 1})


def test_values_are_never_formatted_again() -> None:
    t = PromptTemplate("x={x}")
    assert t.render({"x": "{y} {0} %s {x.__class__}"}) == "x={y} {0} %s {x.__class__}"
    df = pd.DataFrame({"x": ["{y} %s %(k)s %%", "{}"]})
    assert t.render_frame(df).tolist() == ["x={y} %s %(k)s %%", "x={}"]


def test_literal_braces_and_json_like_prompts() -> None:
    t = PromptTemplate('Answer as JSON like {{"label": "positive", "n": 1}} for: {text} }}{{')
    assert t.fields == ("text",)
    expected = 'Answer as JSON like {"label": "positive", "n": 1} for: hi }{'
    assert t.render({"text": "hi"}) == expected
    assert t.render_frame(pd.DataFrame({"text": ["hi"]})).tolist() == [expected]


def test_percent_signs_in_literals() -> None:
    t = PromptTemplate("100% of {a}, %s %(b)s %%")
    assert t.render({"a": "x"}) == "100% of x, %s %(b)s %%"
    assert t.render_frame(pd.DataFrame({"a": ["x"]})).tolist() == ["100% of x, %s %(b)s %%"]


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{x.__class__}", ["{x.__class__}", "attribute or index", "{x}"]),
        ("{x.__class__.__mro__}", ["attribute or index"]),
        ("{x[0]}", ["{x[0]}", "attribute or index", "{x}"]),
        ("{0}", ["{0}", "positional"]),
        ("{}", ["{}", "has no name"]),
        ("{x!r}", ["{x!r}", "conversion", "{x}"]),
        ("{x:>10}", ["{x:>10}", "format spec", "{x}"]),
        ("{x:{y}}", ["format spec"]),
    ],
)
def test_rejected_placeholders(template: str, words: list[str]) -> None:
    with pytest.raises(BatchInputError) as info:
        PromptTemplate(f"Hello {template} there")
    message = str(info.value)
    for word in words:
        assert word in message
    assert "{{" in message  # the literal-brace hint


def test_every_bad_placeholder_reported_at_once() -> None:
    with pytest.raises(BatchInputError) as info:
        PromptTemplate("{a.b} {0} {c!s} {ok}")
    assert len(info.value.problems) == 4  # three problems and the hint


@pytest.mark.parametrize("template", ["{", "a { b", "}", "x } y", "{topic", '{"a": 1}'])
def test_malformed_template(template: str) -> None:
    with pytest.raises(BatchInputError) as info:
        PromptTemplate(template)
    assert "{{" in str(info.value)


def test_not_a_string() -> None:
    with pytest.raises(BatchInputError, match="must be a string"):
        PromptTemplate(42)  # type: ignore[arg-type]


def test_render_frame_keeps_index_and_matches_render() -> None:
    df = pd.DataFrame(
        {"topic": ["cats", "dogs", 'é\n"q"'], "n": [1, 2, 3], "extra": [0.5, np.nan, None]},
        index=pd.Index(["r1", "r2", "r3"], name="rid"),
    )
    t = PromptTemplate("About {topic} ({n}) [{extra}] {topic}")
    out = t.render_frame(df)
    assert out.index.equals(df.index)
    assert all(isinstance(v, str) for v in out)
    assert out.tolist() == [t.render(row) for row in df.to_dict("records")]
    assert out.iloc[0] == "About cats (1) [0.5] cats"


def test_render_frame_stringifies_missing_values() -> None:
    df = pd.DataFrame({"a": pd.Series(["x", None, np.nan], dtype=object)})
    out = PromptTemplate("<{a}>").render_frame(df).tolist()
    assert out[0] == "<x>"
    assert all(isinstance(v, str) for v in out)


def test_render_frame_without_fields_and_empty_frame() -> None:
    df = pd.DataFrame({"a": [1, 2]}, index=[10, 20])
    out = PromptTemplate("same {{x}}").render_frame(df)
    assert out.tolist() == ["same {x}", "same {x}"]
    assert out.index.tolist() == [10, 20]
    empty = PromptTemplate("{a}").render_frame(df.iloc[:0])
    assert len(empty) == 0


def test_render_frame_missing_or_duplicate_column() -> None:
    with pytest.raises(BatchInputError, match="'b'"):
        PromptTemplate("{a} {b}").render_frame(pd.DataFrame({"a": [1]}))
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(BatchInputError, match="more than one column"):
        PromptTemplate("{a}").render_frame(dup)


def test_repr_and_equality() -> None:
    t = PromptTemplate("Hi {x}")
    assert repr(t) == "PromptTemplate('Hi {x}')"
    assert t == PromptTemplate("Hi {x}")
    assert t != PromptTemplate("Hi {y}")
    assert hash(t) == hash(PromptTemplate("Hi {x}"))
    assert t != "Hi {x}"


# ---- registry ------------------------------------------------------------------------------


@pytest.fixture
def scratch_id() -> Iterator[str]:
    yield "test_scratch_prompt"
    unregister_prompt("test_scratch_prompt")


def test_builtin_prompts() -> None:
    ids = [p.prompt_id for p in list_prompts()]
    for name in ("joke_about_topic", "sentiment_classifier", "question_answering"):
        assert name in ids
    joke = get_prompt("joke_about_topic")
    assert joke.template.template == "Tell me a joke about {topic} in less than 50 words."
    assert joke.template.fields == ("topic",)
    assert get_prompt("sentiment_classifier").template.fields == ("text",)
    assert get_prompt("question_answering").template.fields == ("context", "question")
    for prompt in list_prompts():
        assert prompt.system_prompt
        assert prompt.description


def test_register_get_overwrite(scratch_id: str) -> None:
    named = register_prompt(scratch_id, "Summarise {doc}", description="d", system_prompt="S")
    assert isinstance(named, NamedPrompt)
    assert get_prompt(scratch_id) == named
    assert named.template.fields == ("doc",)
    with pytest.raises(BatchInputError, match="overwrite=True"):
        register_prompt(scratch_id, "Other {doc}")
    replaced = register_prompt(scratch_id, PromptTemplate("Other {x}"), overwrite=True)
    assert get_prompt(scratch_id) is replaced
    assert replaced.system_prompt is None
    assert scratch_id in [p.prompt_id for p in list_prompts()]


def test_register_rejects_bad_template_and_id(scratch_id: str) -> None:
    with pytest.raises(BatchInputError, match="attribute or index"):
        register_prompt(scratch_id, "{x.y}")
    with pytest.raises(BatchInputError):
        get_prompt(scratch_id)  # nothing was registered
    with pytest.raises(BatchInputError, match="prompt_id"):
        register_prompt("bad id!", "x")


def test_get_unknown_lists_known_ids() -> None:
    with pytest.raises(BatchInputError) as info:
        get_prompt("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert "joke_about_topic" in message
    assert "register_prompt" in message


def test_rendered_lengths_match_the_rendered_prompts() -> None:
    df = pd.DataFrame({"a": ["x", "ünï", "", "long " * 10], "b": [1, 22, 333, None]})
    template = PromptTemplate("{a}-{b} and {a} again {{braces}}")
    expected = template.render_frame(df).str.len().tolist()
    assert template.arrow_lengths(df).tolist() == expected
    assert template.render_arrow(df).to_pylist() == template.render_frame(df).tolist()
    table = pa.table({"a": df["a"].tolist(), "b": [1.0, 22.0, 333.0, 4.5]})
    from_table = table.to_pandas()
    assert (
        template.arrow_lengths(table).tolist()
        == template.render_frame(from_table).str.len().tolist()
    )
    assert template.render_arrow(table).to_pylist() == template.render_frame(from_table).tolist()


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_lengths_of_columns_in_several_chunks(kind: pa.DataType) -> None:
    """A file's batches come as chunked columns: every chunk counted, in order."""
    texts = ["x", "ünï", "", "long " * 10, "🙂 emoji", "tab\there"]
    chunks = [texts[:2], [], texts[2:5], texts[5:]]
    table = pa.table(
        {
            "a": pa.chunked_array([pa.array(c, kind) for c in chunks], kind),
            "b": pa.chunked_array([pa.array(c[::-1], kind) for c in chunks], kind),
        }
    )
    template = PromptTemplate("{a}: {b}")
    b_texts = [t for c in chunks for t in c[::-1]]
    expected = [len(f"{a}: {b}") for a, b in zip(texts, b_texts, strict=True)]
    assert template.arrow_lengths(table).tolist() == expected
    assert template.arrow_lengths(table.slice(1, 3)).tolist() == expected[1:4]
    assert template.arrow_lengths(table.slice(0, 0)).tolist() == []


@pytest.mark.parametrize(
    "values",
    [
        ["plain", "ünï 🙂", "", "tab\there", "long " * 50],  # all str: straight to Arrow
        ["text", b"bytes", "more"],  # not all str: each value's str()
        ["text", 3, 4.5],
        ["text", None, "more"],
        ["text", float("nan")],
        [b"only", b"bytes"],
        [1, 2, 3],
    ],
)
def test_object_columns_give_each_values_str(values: list[object]) -> None:
    """Text in an object column (how pandas before 3.0 holds it) is sent as it is, bytes
    decoded as UTF-8 (as pandas' ``astype(str)`` does), any other value as ``str(value)``,
    whichever way the column is converted."""
    column = pd.Series(values, dtype=object)
    expected = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    assert text_array(column).to_pylist() == expected
    assert text_array(column).type == pa.large_string()
    assert text_lengths(column).tolist() == [len(t) for t in expected]
    template = PromptTemplate("<{a}>")
    frame = pd.DataFrame({"a": column})
    assert template.render_arrow(frame).to_pylist() == [f"<{t}>" for t in expected]
    assert template.render_frame(frame).tolist() == [f"<{t}>" for t in expected]


@pytest.mark.parametrize(
    "values",
    [
        ["plain", "ünï 🙂", "", "\x00 and \n", "long é " * 500],
        ["text", None, "ünï", float("nan"), pd.NA, ""],
        [None, None],
        [],
    ],
)
def test_str_array_holds_what_arrow_reads(values: list[object]) -> None:
    """The caller's ``str`` values as Arrow would read them, missing values as nulls when
    asked for, and no UTF-8 copy left inside any of them."""
    objects = np.array(values, dtype=object)
    expected = pa.array(
        [v.encode().decode() if isinstance(v, str) else v for v in values],
        pa.large_string(),
        from_pandas=True,
    )
    sizes = [sys.getsizeof(v) for v in values]
    made = str_array(objects, missing=True)
    assert made is not None and made.equals(expected)
    made.validate(full=True)
    assert [sys.getsizeof(v) for v in values] == sizes
    assert (str_array(objects) is None) == (expected.null_count > 0)


@pytest.mark.parametrize("values", [["text", 3], ["text", b"bytes"], ["lone \ud800 surrogate"]])
def test_str_array_refuses_what_is_not_text(values: list[object]) -> None:
    assert str_array(np.array(values, dtype=object), missing=True) is None
