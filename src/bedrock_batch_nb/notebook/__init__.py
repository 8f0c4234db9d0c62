"""The notebook layer: a thin client of the engine, beside it and never inside it.

``magic``     the ``%%bedrock_batch`` cell magic and ``%bedrock_batch_form`` (IPython)
``form``      :class:`BatchForm`, the ipywidgets form behind ``bedrock_batch_nb.form(df)``
``progress``  :class:`RunProgress`, live progress: widgets in Jupyter, text bars elsewhere

Needs the ``[notebook]`` extra (IPython and ipywidgets).
"""

from __future__ import annotations

from ..progress import RunProgress
from .form import BatchForm, form
from .magic import BedrockBatchMagic, load_ipython_extension

__all__ = ["BatchForm", "BedrockBatchMagic", "RunProgress", "form", "load_ipython_extension"]
