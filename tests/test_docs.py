"""The README's options table is the RunConfig: same names, same defaults."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest

from bedrock_batch_nb.config import RunConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_options() -> dict[str, str]:
    section = README.read_text().split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_every_option_is_documented_with_its_default() -> None:
    documented = readme_options()
    for field in dataclasses.fields(RunConfig):
        assert field.name in documented, f"README lacks option {field.name}"
        shown = documented[field.name].strip("`")
        if field.default is dataclasses.MISSING:
            default = field.default_factory() if callable(field.default_factory) else None
            if default is None:
                continue  # required, or resolved from the environment
        else:
            default = field.default
        if field.name in ("bucket", "role_arn", "region"):
            continue  # documented as where the value comes from
        assert ast.literal_eval(shown) == default, field.name
    assert set(documented) == {f.name for f in dataclasses.fields(RunConfig)}


def test_readme_quickstart_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first Python block, executed from the repository root."""
    block = README.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(README.parent)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    out, emb = namespace["out"], namespace["emb"]
    assert isinstance(out, pd.DataFrame) and isinstance(emb, pd.DataFrame)
    assert len(out) == len(emb) == 2500
    assert out["error"].isna().all() and emb["error"].isna().all()
