"""What a magic line or the form's "Data" field names: a notebook variable, a path or a URI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import BatchInputError

KINDS = (
    "a DataFrame or Hugging Face dataset variable, a local CSV/Parquet/JSONL path, "
    "s3://bucket/key or hf://dataset"
)


def resolve_data(token: str, namespace: Mapping[str, Any]) -> Any:
    """The data ``token`` names: a notebook variable (``df``, ``data.train``: an attribute,
    or a key of a mapping such as a Hugging Face ``DatasetDict``'s split) first, else a
    local path or an ``s3://`` / ``hf://`` URI, passed on as a string for the engine to load.
    """
    token = token.strip()
    head, *attrs = token.split(".")
    if head.isidentifier() and head in namespace:
        value = namespace[head]
        try:
            for attr in attrs:
                if isinstance(value, Mapping) and attr in value:
                    value = value[attr]
                else:
                    value = getattr(value, attr)
        except AttributeError:
            pass
        else:
            return value
    if "://" in token or os.path.exists(os.path.expanduser(token)):
        return token
    if token.replace(".", "").isidentifier():
        raise BatchInputError(
            f"No variable {token!r} in the notebook (and no file by that name): name {KINDS}."
        )
    raise BatchInputError(f"No file {token!r}: name {KINDS}.")


def variable_name(value: Any, namespace: Mapping[str, Any]) -> str | None:
    """The name a notebook variable holding ``value`` goes by, if any."""
    for name, candidate in namespace.items():
        if candidate is value and not name.startswith("_"):
            return name
    return None


def columns_of(value: Any) -> list[str] | None:
    """The columns of a DataFrame-like value (None for a path, a URI or unknown)."""
    columns = getattr(value, "columns", None)
    if columns is None:
        columns = getattr(value, "column_names", None)  # a datasets.Dataset
    if columns is None or isinstance(columns, Mapping):  # a DatasetDict's: per split
        return None
    return [str(c) for c in columns]
