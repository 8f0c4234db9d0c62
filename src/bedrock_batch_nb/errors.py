"""Errors a user can act on.

Every error raised for bad input or configuration is a :class:`BatchInputError` whose
message is one or more short lines that say what is wrong and how to fix it, so that
the notebook layer can show it without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class BedrockBatchError(Exception):
    """Base class of every error this package raises on purpose."""


class BatchInputError(BedrockBatchError, ValueError):
    """Bad input or options, found before anything is staged or paid for.

    ``problems`` holds one message per problem; ``str(error)`` joins them a line each.
    """

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UnknownModelError(BatchInputError):
    """The model id matches no adapter this package ships."""


class BatchRunError(BedrockBatchError, RuntimeError):
    """A run could not go on (for example a job ended ``Failed``)."""
