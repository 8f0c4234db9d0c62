"""Progress of a run as a ``tqdm.auto`` bar: a widget in Jupyter, text in a terminal.

The bar is created in the caller's thread (where a notebook displays it) and only updated
from the run's background thread.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .orchestrator import RunStatus
    from .run import BatchRun


class ProgressBar:
    """An overall bar in records, with jobs done/active and the phase as its postfix."""

    def __init__(self, run: BatchRun, *, file: IO[str] | None = None, **tqdm_kwargs: Any) -> None:
        self.bar = tqdm(
            total=len(run.rows),
            desc=run.run_id,
            unit="rec",
            file=file,
            **tqdm_kwargs,
        )
        self._closed = False
        run.add_listener(self.update)

    def update(self, status: RunStatus) -> None:
        if self._closed:
            return
        self.bar.total = status.total_records or self.bar.total
        self.bar.n = status.processed
        self.bar.set_postfix_str(
            f"{status.phase}: {status.finished_jobs}/{len(status.jobs)} jobs done, "
            f"{status.active_jobs} active, {status.failed:,} failed",
            refresh=False,
        )
        self.bar.refresh()
        if status.done:
            self._closed = True
            self.bar.close()
            if status.note:
                tqdm.write(status.note)
