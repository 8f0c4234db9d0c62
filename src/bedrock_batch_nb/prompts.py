"""Prompt templates: ``{column}`` placeholders filled from each row, and named prompts.

Only plain column names may stand between braces.  Attribute access (``{x.__class__}``),
indexing (``{x[0]}``), positional fields (``{0}``, ``{}``), conversions (``{x!r}``) and
format specs (``{x:>10}``) are refused, so a template can never reach into the objects it
is given.  ``{{`` and ``}}`` are literal braces, which is how JSON examples are written.

Rendering never calls ``str.format`` on user values: the template is split once into its
literal parts and field names, and each row's values (``str(value)``) are put between them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import BatchInputError

_BRACE_HINT = (
    "Write a literal brace as '{{' or '}}' (e.g. JSON examples: '{{\"label\": \"positive\"}}')."
)


def _field_problem(name: str, conversion: str | None, spec: str) -> str | None:
    shown = (
        "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    )
    if name == "":
        return f"Placeholder {shown} has no name: write a column name, e.g. {{topic}}."
    if name.isdigit():
        return (
            f"Placeholder {shown} is positional: placeholders must name a column, e.g. {{topic}}."
        )
    if "." in name or "[" in name:
        root = re.split(r"[.\[]", name, maxsplit=1)[0] or "column"
        return (
            f"Placeholder {shown} uses attribute or index access, which is not allowed: use a "
            f"plain column name such as {{{root}}} (make a new column for derived values)."
        )
    if conversion is not None:
        return (
            f"Placeholder {shown} has a conversion ('!{conversion}'), which is not allowed: "
            f"write {{{name}}}."
        )
    if spec:
        return (
            f"Placeholder {shown} has a format spec (':{spec}'), which is not allowed: write "
            f"{{{name}}} and format the column beforehand."
        )
    return None


class PromptTemplate:
    """A template with ``{column}`` placeholders.

    >>> t = PromptTemplate("Tell me a joke about {topic}.")
    >>> t.fields
    ('topic',)
    >>> t.render({"topic": "cats"})
    'Tell me a joke about cats.'
    """

    __slots__ = ("_fields", "_literals", "_names", "_template")

    def __init__(self, template: str) -> None:
        if not isinstance(template, str):
            raise BatchInputError(
                f"A prompt template must be a string, not {type(template).__name__}."
            )
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise BatchInputError(
                f"The prompt template is malformed ({exc}): every '{{' needs a matching '}}' "
                f"around a column name. {_BRACE_HINT}"
            ) from None
        literals: list[str] = []
        names: list[str] = []
        problems: list[str] = []
        pending = ""
        for literal, name, spec, conversion in parsed:
            pending += literal
            if name is None:
                continue
            problem = _field_problem(name, conversion, spec or "")
            if problem is not None:
                problems.append(problem)
            literals.append(pending)
            names.append(name)
            pending = ""
        literals.append(pending)
        if problems:
            raise BatchInputError([*problems, _BRACE_HINT])
        self._template = template
        self._literals = tuple(literals)
        self._names = tuple(names)
        self._fields = tuple(dict.fromkeys(names))

    @property
    def template(self) -> str:
        return self._template

    @property
    def fields(self) -> tuple[str, ...]:
        """The column names used, each once, in order of first appearance."""
        return self._fields

    def render(self, row: Mapping[str, Any]) -> str:
        """The prompt for one row (``str()`` of each value)."""
        missing = [f for f in self._fields if f not in row]
        if missing:
            raise BatchInputError(
                f"The row has no value for {', '.join(map(repr, missing))}, which the prompt uses."
            )
        parts = [self._literals[0]]
        for name, literal in zip(self._names, self._literals[1:], strict=True):
            parts.append(str(row[name]))
            parts.append(literal)
        return "".join(parts)

    def render_frame(self, df: pd.DataFrame) -> pd.Series:
        """The prompt for every row of ``df``: a Series of str with ``df``'s index."""
        missing = [f for f in self._fields if f not in df.columns]
        if missing:
            raise BatchInputError(
                f"The prompt uses column(s) {', '.join(map(repr, missing))} that the data does "
                f"not have. Columns available: {', '.join(map(repr, map(str, df.columns)))}."
            )
        if not self._names:
            return pd.Series([self._literals[0]] * len(df), index=df.index, dtype=object)
        values = {name: _as_str_list(df, name) for name in self._fields}
        # Our own %-format from the escaped literal parts; the values are already str.
        fmt = "%s".join(lit.replace("%", "%%") for lit in self._literals)
        rows = zip(*(values[name] for name in self._names), strict=True)
        return pd.Series([fmt % row for row in rows], index=df.index, dtype=object)

    def render_arrow(self, rows: Rows) -> pa.Array:
        """The prompt for every row as one Arrow string array, rendered by Arrow's
        element-wise join (no Python string per row)."""
        n = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
        if not self._names:
            return pa.array([self._literals[0]] * n, pa.large_string())
        parts = self.arrow_parts(rows)
        if len(parts) == 1:
            rendered: pa.Array = parts[0]
            return rendered
        joined: pa.Array = pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string()))
        return joined

    def arrow_parts(self, rows: Rows) -> list[pa.Array | pa.Scalar]:
        """What :meth:`render_arrow` joins, in order: the literals (as scalars) and the
        columns' texts (as large string arrays).  Staging joins them itself, each record's
        id in front, so that the prompts are not made first and then copied again."""
        values = {name: text_array(column_of(rows, name)) for name in self._fields}
        parts: list[pa.Array | pa.Scalar] = []
        for literal, name in zip(self._literals, self._names, strict=False):
            if literal:
                parts.append(pa.scalar(literal, pa.large_string()))
            parts.append(values[name])
        if self._literals[-1]:
            parts.append(pa.scalar(self._literals[-1], pa.large_string()))
        return parts

    def arrow_lengths(self, rows: Rows) -> npt.NDArray[Any]:
        """``len()`` of every row's prompt, from the columns' lengths (Arrow kernels)."""
        n = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
        total = np.full(n, sum(len(lit) for lit in self._literals), dtype=np.int64)
        lengths = {name: text_lengths(column_of(rows, name)) for name in self._fields}
        for name in self._names:
            total += lengths[name]
        return total

    def __repr__(self) -> str:
        return f"PromptTemplate({self._template!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PromptTemplate):
            return NotImplemented
        return self._template == other._template

    def __hash__(self) -> int:
        return hash(self._template)


Rows: TypeAlias = pd.DataFrame | pa.Table
"""Rows as a source reads them: a DataFrame, or an Arrow table for file-backed sources."""

TEXT_TYPES = (pa.string(), pa.large_string(), pa.string_view())
"""Arrow types that hold text as it is sent."""


def column_of(rows: Rows, name: str) -> pa.Array | pa.ChunkedArray | pd.Series:
    if isinstance(rows, pa.Table):
        return rows.column(name)
    column = rows[name]
    if isinstance(column, pd.DataFrame):
        raise BatchInputError(
            f"The data has more than one column named {name!r}: rename them first."
        )
    return column


def text_array(values: pa.Array | pa.ChunkedArray | pd.Series) -> pa.Array:
    """``str(value)`` of every value, as an Arrow large string array (text columns as they
    are; other types through Python, so that numbers read as Python writes them)."""
    if isinstance(values, pd.Series):
        held = arrow_texts(values)
        if held is None:
            texts = str_objects(values)
            return pa.array(_strings(values), pa.large_string()) if texts is None else texts
        values = held
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type in TEXT_TYPES and values.null_count == 0:
        text: pa.Array = values.cast(pa.large_string())
        return text
    return pa.array([str(v) for v in values.to_pylist()], pa.large_string())


def text_lengths(values: pa.Array | pa.ChunkedArray | pd.Series) -> npt.NDArray[Any]:
    """``len(str(value))`` of every value (Arrow's code-point count for text).  Text
    without nulls is counted a chunk at a time as it is, not first copied into one array
    (preparing 100,000 SimpleCoT rows' two columns: 0.02 s instead of 0.05 s)."""
    if (
        isinstance(values, pa.Array | pa.ChunkedArray)
        and values.type in _COUNTED_AS_IS
        and values.null_count == 0
    ):
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        counts: list[npt.NDArray[Any]] = [
            pc.utf8_length(chunk).to_numpy(zero_copy_only=False) for chunk in chunks
        ]
        joined: npt.NDArray[Any] = np.concatenate([np.zeros(0, np.int64), *counts])
        return joined.astype(np.int64, copy=False)
    if isinstance(values, pd.Series) and holds_str_objects(values):
        counted = str_lengths(values.to_numpy(dtype=object))
        if counted is not None:
            return counted
    lengths: npt.NDArray[Any] = pc.utf8_length(text_array(values)).to_numpy(zero_copy_only=False)
    return lengths.astype(np.int64, copy=False)


def str_lengths(values: npt.NDArray[Any]) -> npt.NDArray[np.int64] | None:
    """``len()`` of each value when all are ``str`` (None otherwise), counted by Python
    without encoding them (:func:`str_array` encodes: a run's checks need the lengths of
    every row, its staging the text of one batch at a time)."""
    try:
        return np.fromiter(map(str.__len__, values), np.int64, count=len(values))
    except TypeError:  # not a str
        return None


_COUNTED_AS_IS = (pa.string(), pa.large_string())


def str_objects(column: pd.Series) -> pa.Array | None:
    """A column whose values are all ``str`` held as Python objects (an object column, what
    pandas before 3.0 holds text in, or a ``string[python]`` one), as Arrow large strings
    straight from the objects (:func:`str_array`); None when one is missing or not a
    ``str``.  (Through ``astype(str)`` and back, 10,000 SimpleCoT sources took 30 ms
    instead of 4.)"""
    if not len(column) or not holds_str_objects(column):
        return None
    return str_array(column.to_numpy(dtype=object))


def arrow_texts(column: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """A column of text that pandas holds in Arrow (pandas 3's ``str``,
    ``string[pyarrow]``), as it is, missing values as nulls; None for anything else
    (``str`` objects, numbers, mixed values)."""
    if holds_str_objects(column) or not isinstance(column.dtype, pd.StringDtype | pd.ArrowDtype):
        return None
    try:
        texts = pa.array(column, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return texts if texts.type in TEXT_TYPES else None


def holds_str_objects(column: pd.Series) -> bool:
    """Whether pandas holds ``column``'s values as Python objects (object dtype, or a
    string dtype stored in Python), not in Arrow or NumPy."""
    kind = column.dtype
    return kind == np.dtype(object) or (
        isinstance(kind, pd.StringDtype) and kind.storage == "python"
    )


def str_array(values: npt.NDArray[Any], *, missing: bool = False) -> pa.LargeStringArray | None:
    """Python ``str`` values as an Arrow large string array, each encoded with
    ``str.encode``; None when one is not a ``str`` (or holds a lone surrogate), or is
    missing (None, NaN, ``pd.NA``) unless ``missing`` (they are then nulls).

    Not ``pyarrow.array``: it asks each ``str`` for its UTF-8 the way that makes CPython
    keep a copy inside every ``str`` that is not plain ASCII, for as long as the ``str``
    lives, so a run over a DataFrame of such text left the caller's frame larger by the
    text's size (106 MiB for 200,000 SimpleCoT rows, about half of them not ASCII)."""
    absent: npt.NDArray[np.bool_] | None = None
    try:
        encoded = list(map(str.encode, values))
    except (TypeError, UnicodeEncodeError):
        if not missing:
            return None
        absent = np.asarray(pd.isna(values), dtype=bool)
        try:
            encoded = [
                b"" if gone else str.encode(v) for v, gone in zip(values, absent, strict=True)
            ]
        except (TypeError, UnicodeEncodeError):
            return None
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, count=len(encoded)), out=offsets[1:])
    valid = None if absent is None else pa.py_buffer(np.packbits(~absent, bitorder="little"))
    array: pa.LargeStringArray = pa.LargeStringArray.from_buffers(
        len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)), valid
    )
    return array


def _as_str_list(df: pd.DataFrame, name: str) -> list[str]:
    column = column_of(df, name)
    assert isinstance(column, pd.Series)
    return _strings(column)


def _strings(column: pd.Series) -> list[str]:
    """``str(value)`` of every value of a pandas column."""
    if holds_str_objects(column):
        objects: list[Any] = column.tolist()
        if all(type(v) is str for v in objects):  # as they are (pandas 3's astype(str)
            return objects  # reads them through pyarrow: see str_array)
    values: list[Any] = column.astype(str).tolist()
    if column.isna().any():  # astype(str) may keep missing values missing: str() them
        values = [
            v if isinstance(v, str) else str(o)
            for v, o in zip(values, column.tolist(), strict=True)
        ]
    return values


# ---- named prompts -------------------------------------------------------------------------


@dataclass(frozen=True)
class NamedPrompt:
    """A registered template with its system prompt, chosen by ``prompt_id``."""

    prompt_id: str
    template: PromptTemplate
    system_prompt: str | None = None
    description: str = ""
    model_hint: str | None = None
    """A model id this prompt was written for, if any (informational)."""


_PROMPT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_PROMPTS: dict[str, NamedPrompt] = {}


def register_prompt(
    prompt_id: str,
    template: str | PromptTemplate,
    *,
    system_prompt: str | None = None,
    description: str = "",
    model_hint: str | None = None,
    overwrite: bool = False,
) -> NamedPrompt:
    """Register a template under ``prompt_id`` (use it with ``prompt_id=...``)."""
    if not isinstance(prompt_id, str) or not _PROMPT_ID_RE.fullmatch(prompt_id):
        raise BatchInputError(
            f"prompt_id {prompt_id!r} must be letters, digits, '_', '.' or '-', starting with "
            "a letter or digit."
        )
    if prompt_id in _PROMPTS and not overwrite:
        raise BatchInputError(
            f"A prompt named {prompt_id!r} is already registered: pass overwrite=True to "
            "replace it, or choose another name."
        )
    tpl = template if isinstance(template, PromptTemplate) else PromptTemplate(template)
    named = NamedPrompt(prompt_id, tpl, system_prompt or None, description, model_hint)
    _PROMPTS[prompt_id] = named
    return named


def unregister_prompt(prompt_id: str) -> None:
    """Remove a registered prompt (unknown ids are ignored)."""
    _PROMPTS.pop(prompt_id, None)


def get_prompt(prompt_id: str) -> NamedPrompt:
    """The prompt registered as ``prompt_id``."""
    try:
        return _PROMPTS[prompt_id]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_PROMPTS)) or "none"
        raise BatchInputError(
            f"Unknown prompt_id {prompt_id!r}. Registered prompts: {known}. Add yours with "
            "register_prompt(prompt_id, template)."
        ) from None


def list_prompts() -> list[NamedPrompt]:
    """Every registered prompt, sorted by id."""
    return [_PROMPTS[k] for k in sorted(_PROMPTS)]


# The three prompts of the AWS sample for Bedrock batch inference
# (aws-samples "bedrock-batch-orchestrator"), with plain column names.
register_prompt(
    "joke_about_topic",
    "Tell me a joke about {topic} in less than 50 words.",
    system_prompt="You are a witty comedian who writes short, family-friendly jokes.",
    description="A short joke about each row's `topic`.",
)
register_prompt(
    "sentiment_classifier",
    "Classify the sentiment of the following text as `positive`, `negative`, or `neutral`. "
    "Just give the sentiment, no preamble or explanation.\n\nText:\n{text}",
    system_prompt=(
        "You are a sentiment classifier. Answer with exactly one word: positive, negative "
        "or neutral."
    ),
    description="positive / negative / neutral for each row's `text`.",
)
register_prompt(
    "question_answering",
    "Answer the question using only the context below. Think it through inside <thinking> "
    "tags, then give the final answer inside <answer> tags. If the context does not contain "
    "the answer, say so in the <answer> tags.\n\n<context>\n{context}\n</context>\n\n"
    "<question>\n{question}\n</question>",
    system_prompt=(
        "You are an AI assistant tasked with providing accurate and justified answers to "
        "users' questions."
    ),
    description="An answer to each row's `question` from its `context`.",
)
