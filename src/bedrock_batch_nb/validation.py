"""What is checked before anything is staged or paid for.

Each check yields one short message that names what is wrong and how to fix it;
:func:`check_rows` returns them all so that a user fixes everything in one go.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError

from .aws import describe_error, error_code
from .collecting import RESULT_COLUMNS
from .config import RunConfig
from .models import ModelAdapter, model_resource
from .prompts import TEXT_TYPES, PromptTemplate, arrow_texts, holds_str_objects, str_lengths

_SHOW = 5


def _mask(values: pa.ChunkedArray | pa.Array) -> npt.NDArray[Any]:
    """A boolean Arrow column as a numpy mask (missing as False)."""
    mask: npt.NDArray[Any] = pc.fill_null(values, False).to_numpy(zero_copy_only=False)
    return mask.astype(bool, copy=False)


_SCALARS = (str, int, float, bool, np.generic)


def _rows_named(index: pd.Index, mask: Any) -> str:
    labels = list(index[mask][:_SHOW])
    more = int(mask.sum()) - len(labels)
    text = ", ".join(repr(label) for label in labels)
    return f"{text}, and {more:,} more" if more > 0 else text


class _Count:
    """Rows that have one problem: how many, the first few labels, what kinds of value."""

    def __init__(self) -> None:
        self.count = 0
        self.labels: list[Any] = []
        self.kinds: set[str] = set()

    def add(self, index: pd.Index, mask: npt.NDArray[Any], values: pd.Series | None = None) -> None:
        hits = int(mask.sum())
        if not hits:
            return
        self.count += hits
        if len(self.labels) < _SHOW:
            self.labels += list(index[mask][: _SHOW - len(self.labels)])
        if values is not None:
            self.kinds |= {type(v).__name__ for v in values[mask]}

    def named(self) -> str:
        text = ", ".join(repr(label) for label in self.labels)
        more = self.count - len(self.labels)
        return f"{text}, and {more:,} more" if more > 0 else text


def check_columns(
    columns: Sequence[str],
    config: RunConfig,
    adapter: ModelAdapter,
    template: PromptTemplate | None,
) -> tuple[list[str], list[str]]:
    """Problems with the data's columns for this model and template, and the columns the
    records are made of."""
    problems: list[str] = []
    if adapter.kind == "text" and template is None:
        problems.append(
            f"{config.model_id} is a text model: give a prompt template (prompt='... {{column}} "
            "...') or a registered prompt_id."
        )
    used: list[str] = []
    if template is not None:
        missing = [f for f in template.fields if f not in columns]
        if missing:
            problems.append(
                f"The prompt uses column(s) {', '.join(map(repr, missing))} that the data does "
                f"not have. Columns available: {', '.join(map(repr, columns))}."
            )
        used = [f for f in template.fields if f in columns]
    elif adapter.kind == "embedding":
        col = config.input_text_column
        if col not in columns:
            problems.append(
                f"Embedding models embed the column {col!r}, which the data does not have: set "
                f"input_text_column to one of {', '.join(map(repr, columns))}."
            )
        else:
            used = [col]
    clash = [c for c in RESULT_COLUMNS if c in columns]
    if clash:
        problems.append(
            f"The data already has column(s) {', '.join(map(repr, clash))}, which the results "
            "would overwrite: rename them first."
        )
    repeated = [name for name, count in Counter(columns).items() if count > 1]
    if repeated:
        problems.append(
            f"The data has more than one column named {', '.join(map(repr, repeated))}: give "
            "each column a name of its own first."
        )
        used = [c for c in used if c not in repeated]  # (their values are not checked)
    return problems, used


def _str_blanks(values: pd.Series) -> npt.NDArray[np.bool_] | None:
    """For a column of ``str`` objects, which are blank (empty or only whitespace); None
    when it is not one (another dtype, or a value that is not a ``str``)."""
    if not holds_str_objects(values):
        return None
    objects = values.to_numpy(dtype=object)
    lengths = str_lengths(objects)
    if lengths is None:
        return None
    blank: npt.NDArray[np.bool_] = (lengths == 0) | np.fromiter(
        map(str.isspace, objects), bool, count=len(objects)
    )
    return blank


class ValueChecks:
    """The values of the columns records are made of, checked a batch of rows at a time:
    text where text is embedded, text or numbers where a template puts them, nothing
    empty.  :meth:`problems` reports each kind once, over every batch."""

    def __init__(self, used: Sequence[str], *, templated: bool) -> None:
        self.used = list(used)
        self.templated = templated
        self._not_text = {c: _Count() for c in self.used}
        self._odd = {c: _Count() for c in self.used}
        self._empty = {c: _Count() for c in self.used}

    def add(self, rows: pd.DataFrame | pa.Table, labels: pd.Index | None = None) -> None:
        """Check a batch of rows (``labels``: their row labels, for an Arrow table)."""
        if isinstance(rows, pa.Table):
            assert labels is not None
            self._add_arrow(rows, labels)
            return
        for col in self.used:
            values = rows[col]
            blank = _str_blanks(values)  # str objects, checked without encoding them
            if blank is not None:
                self._empty[col].add(rows.index, blank)
                continue
            texts = arrow_texts(values)  # text pandas holds in Arrow: Arrow's checks
            if texts is not None:
                self._check_arrow(col, texts, rows.index)
                continue
            if not self.templated:
                not_text = values.notna() & ~values.map(lambda v: isinstance(v, str))
                self._not_text[col].add(rows.index, not_text.to_numpy(dtype=bool))
            elif values.dtype == object:
                odd = values.map(lambda v: v is not None and not isinstance(v, _SCALARS)).to_numpy(
                    dtype=bool
                )
                self._odd[col].add(rows.index, odd, values)
            empty = values.isna()
            if not pd.api.types.is_numeric_dtype(values.dtype):  # (a number is never blank)
                empty |= values.astype(str).str.strip() == ""
            self._empty[col].add(rows.index, empty.to_numpy(dtype=bool))

    def _add_arrow(self, rows: pa.Table, labels: pd.Index) -> None:
        """The same checks with Arrow kernels, on the values as the file holds them."""
        for col in self.used:
            self._check_arrow(col, rows.column(col), labels)

    def _check_arrow(self, col: str, values: pa.Array | pa.ChunkedArray, labels: pd.Index) -> None:
        kind = values.type
        textual = kind in TEXT_TYPES
        present = _mask(pc.is_valid(values))
        if not self.templated and not textual:
            self._not_text[col].add(labels, present)
        elif self.templated and pa.types.is_nested(kind):
            self._odd[col].add(labels, present)
            self._odd[col].kinds.add(str(kind).split("<", 1)[0])
        empty = ~present
        if textual:
            blank = pc.or_(pc.equal(pc.binary_length(values), 0), pc.utf8_is_space(values))
            empty |= _mask(blank)
        self._empty[col].add(labels, empty)

    def problems(self) -> list[str]:
        problems: list[str] = []
        for col, seen in self._not_text.items():
            if seen.count:
                problems.append(
                    f"Column {col!r} must hold text; {seen.count:,} row(s) hold other "
                    f"values: {seen.named()}."
                )
        for col, seen in self._odd.items():
            if seen.count:
                problems.append(
                    f"Column {col!r} holds values that are not text or numbers "
                    f"({', '.join(sorted(seen.kinds))}) in {seen.count:,} row(s): "
                    f"{seen.named()}. Turn them into text first."
                )
        for col, seen in self._empty.items():
            if seen.count:
                problems.append(
                    f"Column {col!r} is empty or null in {seen.count:,} row(s): "
                    f"{seen.named()}. Fill or drop them first."
                )
        return problems


def check_index(index: pd.Index, config: RunConfig) -> list[str]:
    """Problems with the row labels and the number of rows."""
    problems: list[str] = []
    if index.has_duplicates:
        dup = index.duplicated(keep=False)
        problems.append(
            f"The index has duplicate labels ({_rows_named(index, dup)}): results are "
            "joined back by row, so make it unique first (e.g. df.reset_index())."
        )
    if not len(index):
        problems.append("The data has no rows.")
    elif len(index) < config.min_records_per_job:
        problems.append(
            f"Only {len(index):,} row(s): a Bedrock batch job needs at least "
            f"{config.min_records_per_job:,} records. For a few rows use on-demand calls "
            f"(run.preview(n={len(index)}, invoke=True)), or add rows."
        )
    return problems


def check_rows(
    rows: pd.DataFrame,
    config: RunConfig,
    adapter: ModelAdapter,
    template: PromptTemplate | None,
) -> list[str]:
    """Problems with the rows for this model and template (empty when all is well)."""
    problems, used = check_columns([str(c) for c in rows.columns], config, adapter, template)
    values = ValueChecks(used, templated=template is not None)
    values.add(rows)
    return [*problems, *values.problems(), *check_index(rows.index, config)]


class LengthChecks:
    """Prompts (or texts to embed) over the model's size limit, a batch at a time."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self.adapter = adapter
        self._over = _Count()
        self._longest = 0

    def add(self, lengths: npt.NDArray[Any], labels: pd.Index) -> None:
        over = lengths > self.adapter.max_input_chars
        if over.any():
            self._over.add(labels, over)
            self._longest = max(self._longest, int(lengths.max()))

    def problems(self) -> list[str]:
        if not self._over.count:
            return []
        return [
            f"{self._over.count:,} rendered prompt(s) are longer than "
            f"{self.adapter.max_input_chars:,} characters, the limit for {self.adapter.family}: "
            f"rows {self._over.named()} (longest {self._longest:,})."
        ]


# ---- the model, asked of Bedrock ----------------------------------------------------------

_NOT_THERE = frozenset({"ResourceNotFoundException", "ValidationException"})


def model_problem(bedrock: Any, model_id: str) -> str | None:
    """What Bedrock says is wrong with ``model_id`` in the client's Region, asked with one
    control-plane call before any row is read: GetFoundationModel for a model id or its
    ARN, GetInferenceProfile for a cross-Region profile id or its ARN.  An adapter matches
    a model by its family's prefix, so a misspelt id of a known family would otherwise
    fail only at the first job's creation, once every row was read and staged.

    None when Bedrock knows the model, for other ARNs (application inference profiles,
    custom and provisioned models), and when Bedrock cannot be asked (no permission to
    read model details, no endpoint): the jobs' creation then says what is wrong."""
    mid = model_id.strip()
    resource = model_resource(mid)
    try:
        if resource == "foundation-model":
            bedrock.get_foundation_model(modelIdentifier=mid)
        elif resource == "inference-profile":
            bedrock.get_inference_profile(inferenceProfileIdentifier=mid)
        else:
            return None
    except ClientError as exc:
        if error_code(exc) not in _NOT_THERE:
            return None
        known = _known_ids(bedrock, resource)
        if resource == "inference-profile":  # the same geography's profiles first
            geography = mid.split(".", 1)[0] + "."
            known = [k for k in known if k.startswith(geography)] or known
        close = difflib.get_close_matches(mid, known, n=3, cutoff=0.8)
        hint = (
            f" Did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else " ListFoundationModels and ListInferenceProfiles name the Region's models."
        )
        kind = "inference profile" if resource == "inference-profile" else "model"
        return (
            f"Bedrock has no {kind} {mid!r} in {bedrock.meta.region_name} "
            f"({describe_error(exc)}).{hint}"
        )
    except BotoCoreError:
        return None
    return None


def _known_ids(bedrock: Any, resource: str) -> list[str]:
    """The Region's model ids (``resource`` "foundation-model") or system-defined
    inference profile ids; empty when they cannot be listed."""
    try:
        if resource == "foundation-model":
            summaries = bedrock.list_foundation_models().get("modelSummaries", [])
            return [str(s["modelId"]) for s in summaries]
        pages = bedrock.get_paginator("list_inference_profiles").paginate()
        return [
            str(p["inferenceProfileId"])
            for page in pages
            for p in page.get("inferenceProfileSummaries", [])
        ]
    except (ClientError, BotoCoreError, KeyError):
        return []
