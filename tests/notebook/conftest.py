"""Fixtures of the notebook-layer tests: a real IPython ``InteractiveShell`` with the
extension loaded, and sample data (the emulator fixtures are in ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from bedrock_batch_nb.notebook.magic import BedrockBatchMagic


@pytest.fixture
def topics() -> pd.DataFrame:
    return pd.DataFrame({"topic": [f"topic number {i}" for i in range(150)]})


@pytest.fixture
def texts() -> pd.DataFrame:
    return pd.DataFrame({"input_text": [f"sentence number {i}" for i in range(120)]})


@pytest.fixture
def ip(topics: pd.DataFrame) -> Iterator[InteractiveShell]:
    """A real InteractiveShell with ``%load_ext bedrock_batch_nb`` done, a fresh magic
    (default config) and ``df`` in the namespace."""
    shell = InteractiveShell.instance()
    before = set(shell.user_ns)
    shell.config.pop("BedrockBatchMagic", None)  # %config of an earlier test
    shell.run_line_magic("load_ext", "bedrock_batch_nb")
    magic = BedrockBatchMagic(shell=shell)
    shell.register_magics(magic)
    shell.user_ns["df"] = topics
    yield shell
    for run in magic.runs:  # let background runs end before the next test resets the emulator
        if run.status().started_at is not None and not run.done:
            with contextlib.suppress(Exception):
                run.wait(30)
    shell.configurables.remove(magic)
    shell.config.pop("BedrockBatchMagic", None)
    for name in set(shell.user_ns) - before:
        if not name.startswith("_"):
            del shell.user_ns[name]


@pytest.fixture
def magic(ip: InteractiveShell) -> BedrockBatchMagic:
    found = ip.magics_manager.registry["BedrockBatchMagic"]
    assert isinstance(found, BedrockBatchMagic)
    return found
