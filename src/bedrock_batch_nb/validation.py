"""What is checked before anything is staged or paid for.

Each check yields one short message that names what is wrong and how to fix it;
:func:`check_rows` returns them all so that a user fixes everything in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .collecting import RESULT_COLUMNS
from .config import RunConfig
from .models import ModelAdapter
from .prompts import PromptTemplate

_SHOW = 5
_SCALARS = (str, int, float, bool, np.generic)


def _rows_named(index: pd.Index, mask: Any) -> str:
    labels = list(index[mask][:_SHOW])
    more = int(mask.sum()) - len(labels)
    text = ", ".join(repr(label) for label in labels)
    return f"{text}, and {more:,} more" if more > 0 else text


def check_rows(
    rows: pd.DataFrame,
    config: RunConfig,
    adapter: ModelAdapter,
    template: PromptTemplate | None,
) -> list[str]:
    """Problems with the rows for this model and template (empty when all is well)."""
    problems: list[str] = []
    columns = [str(c) for c in rows.columns]
    if adapter.kind == "text" and template is None:
        problems.append(
            f"{config.model_id} is a text model: give a prompt template (prompt='... {{column}} "
            "...') or a registered prompt_id."
        )
    used: Sequence[str]
    if template is not None:
        used = template.fields
        missing = [f for f in used if f not in columns]
        if missing:
            problems.append(
                f"The prompt uses column(s) {', '.join(map(repr, missing))} that the data does "
                f"not have. Columns available: {', '.join(map(repr, columns))}."
            )
            used = [f for f in used if f in columns]
    else:
        used = []
    if adapter.kind == "embedding" and template is None:
        col = config.input_text_column
        if col not in columns:
            problems.append(
                f"Embedding models embed the column {col!r}, which the data does not have: set "
                f"input_text_column to one of {', '.join(map(repr, columns))}."
            )
        else:
            used = [col]
            values = rows[col]
            not_text = values.notna() & ~values.map(lambda v: isinstance(v, str))
            if not_text.any():
                problems.append(
                    f"Column {col!r} must hold text; {int(not_text.sum()):,} row(s) hold other "
                    f"values: {_rows_named(rows.index, not_text.to_numpy())}."
                )
    if template is not None:
        for col in used:
            values = rows[col]
            if values.dtype != object:
                continue
            odd = values.map(lambda v: v is not None and not isinstance(v, _SCALARS)).to_numpy(
                dtype=bool
            )
            if odd.any():
                kinds = sorted({type(v).__name__ for v in values[odd]})
                problems.append(
                    f"Column {col!r} holds values that are not text or numbers "
                    f"({', '.join(kinds)}) in {int(odd.sum()):,} row(s): "
                    f"{_rows_named(rows.index, odd)}. Turn them into text first."
                )
    for col in used:
        values = rows[col]
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if empty.any():
            problems.append(
                f"Column {col!r} is empty or null in {int(empty.sum()):,} row(s): "
                f"{_rows_named(rows.index, empty.to_numpy())}. Fill or drop them first."
            )
    clash = [c for c in RESULT_COLUMNS if c in columns]
    if clash:
        problems.append(
            f"The data already has column(s) {', '.join(map(repr, clash))}, which the results "
            "would overwrite: rename them first."
        )
    if rows.index.has_duplicates:
        dup = rows.index.duplicated(keep=False)
        problems.append(
            f"The index has duplicate labels ({_rows_named(rows.index, dup)}): results are "
            "joined back by row, so make it unique first (e.g. df.reset_index())."
        )
    if len(rows) < config.min_records_per_job:
        problems.append(
            f"Only {len(rows):,} row(s): a Bedrock batch job needs at least "
            f"{config.min_records_per_job:,} records. For a few rows use on-demand calls "
            f"(run.preview(n={len(rows)}, invoke=True)), or add rows."
        )
    return problems


def check_lengths(lengths: pd.Series, adapter: ModelAdapter) -> list[str]:
    """Prompts (or texts to embed) over the model's size limit, from their lengths."""
    over = (lengths > adapter.max_input_chars).to_numpy()
    if not over.any():
        return []
    return [
        f"{int(over.sum()):,} rendered prompt(s) are longer than {adapter.max_input_chars:,} "
        f"characters, the limit for {adapter.family}: rows {_rows_named(lengths.index, over)} "
        f"(longest {int(lengths.max()):,})."
    ]
