"""Amazon Bedrock batch inference from a notebook: rows in, a joined DataFrame out.

The pipeline, one module per stage:

``sources``      load the rows (DataFrame, CSV/Parquet/JSONL local or on S3, Hugging Face)
``prompts``      ``{column}`` templates and the registry of named prompts
``models``       one adapter per model family: request bodies and response parsing
``validation``   every problem with the rows and options, before anything is paid for
``chunking``     records into jobs within Bedrock's per-job limits
``staging``      JSONL records written under the run's S3 prefix
``orchestrator`` asyncio loop that submits within the concurrency cap and polls
``collecting``   job outputs parsed and joined back to the input rows
``run``          :class:`BatchRun` and :func:`run_batch`, the Python API over all of it

Beside the pipeline: ``progress`` (live progress fed by a run's status) and ``local`` (the
local Bedrock emulator used by the demo and the tests).
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .errors import BatchInputError, BatchRunError, BedrockBatchError, UnknownModelError
from .prompts import PromptTemplate, get_prompt, list_prompts, register_prompt
from .run import BatchRun, list_runs, run_batch

__all__ = [
    "BatchInputError",
    "BatchRun",
    "BatchRunError",
    "BedrockBatchError",
    "PromptTemplate",
    "RunConfig",
    "UnknownModelError",
    "form",
    "get_prompt",
    "list_prompts",
    "list_runs",
    "load_ipython_extension",
    "local_bedrock",
    "register_prompt",
    "run_batch",
]

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext bedrock_batch_nb``: register ``%%bedrock_batch`` and ``%bedrock_batch_form``."""
    from .notebook.magic import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    # The emulator needs moto (the ``[local]`` extra) and the form ipywidgets (the
    # ``[notebook]`` extra): import them only when asked for.
    if name == "local_bedrock":
        from .local import local_bedrock

        return local_bedrock
    if name == "form":
        from .notebook.form import form

        return form
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
