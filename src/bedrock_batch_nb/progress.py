"""Live progress of a run: widgets in Jupyter, text bars in a terminal or a test.

:class:`RunProgress` is created in the foreground (where a notebook displays it) and then
only *updated* from the run's background thread through ``run.add_listener``: every update
replaces a widget trait (``HTML.value``, the bar's value), which ipywidgets sends to the
front end from any thread.  Nothing writes into an ``Output`` widget from a thread.

Whether widgets or text is decided as ``tqdm.auto`` decides it (a Jupyter kernel gets the
notebook bar), unless ``widgets=`` says otherwise.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import pandas as pd
import tqdm.auto
import tqdm.notebook
import tqdm.std

if TYPE_CHECKING:
    from .orchestrator import JobState, RunStatus
    from .run import BatchRun

STATUS_COLOURS = {
    "Completed": "#2e7d32",
    "PartiallyCompleted": "#f9a825",
    "Failed": "#c62828",
    "Stopped": "#757575",
    "Expired": "#6d4c41",
    "InProgress": "#1565c0",
}
TIMELINE_WIDTH = 40


def widgets_available() -> bool:
    """True in a Jupyter kernel (where ``tqdm.auto`` picks its notebook bar)."""
    return issubclass(tqdm.auto.tqdm, tqdm.notebook.tqdm)


def job_elapsed(job: JobState, now: float | None = None) -> float:
    if job.submitted_at is None:
        return 0.0
    return (job.ended_at or now or time.time()) - job.submitted_at


def phase_line(status: RunStatus) -> str:
    jobs = len(status.jobs)
    return (
        f"{status.phase}: {status.finished_jobs}/{jobs} jobs done, {status.active_jobs} active, "
        f"{status.succeeded:,} succeeded, {status.failed:,} failed, {status.elapsed:.1f}s"
    )


def jobs_text(status: RunStatus) -> str:
    """One line per job: index, status, counts and elapsed time."""
    lines = [f"{'job':>4}  {'status':<18} {'records':>8} {'done':>8} {'failed':>7} {'elapsed':>8}"]
    for job in status.jobs:
        lines.append(
            f"{job.chunk.index:>4}  {job.status:<18} {job.records:>8,} {job.processed:>8,} "
            f"{job.errors:>7,} {job_elapsed(job):>7.1f}s"
        )
    return "\n".join(lines)


def _span(status: RunStatus) -> tuple[float, float]:
    starts = [j.submitted_at for j in status.jobs if j.submitted_at is not None]
    start = status.started_at or (min(starts) if starts else 0.0)
    ends = [j.ended_at or j.submitted_at or start for j in status.jobs]
    end = max([status.finished_at or start, *ends])
    return start, max(end - start, 1e-6)


def timeline_text(status: RunStatus, width: int = TIMELINE_WIDTH) -> str:
    """A bar per job between its submission and its end, on the run's time axis."""
    start, span = _span(status)
    lines = [f"timeline ({span:.1f}s)"]
    for job in status.jobs:
        if job.submitted_at is None:
            lines.append(f"{job.chunk.index:>4} |{' ' * width}| not submitted")
            continue
        a = round((job.submitted_at - start) / span * width)
        b = max(a + 1, round(((job.ended_at or start + span) - start) / span * width))
        b = min(b, width)
        a = min(a, b - 1)
        bar = " " * a + "█" * (b - a) + " " * (width - b)
        lines.append(f"{job.chunk.index:>4} |{bar}| {job.status} {job_elapsed(job):.1f}s")
    return "\n".join(lines)


def jobs_html(status: RunStatus) -> str:
    rows = []
    for job in status.jobs:
        done = job.processed / job.records if job.records else 0.0
        colour = STATUS_COLOURS.get(job.status, "#90a4ae")
        message = f"<br><small>{html.escape(job.message)}</small>" if job.message else ""
        rows.append(
            "<tr>"
            f"<td>{job.chunk.index}</td>"
            f"<td style='color:{colour}'>{html.escape(job.status)}{message}</td>"
            f"<td><progress value='{done:.3f}' max='1' style='width:8em'></progress></td>"
            f"<td>{job.processed:,}/{job.records:,}</td>"
            f"<td>{job.success:,}</td><td>{job.errors:,}</td>"
            f"<td>{job_elapsed(job):.1f}s</td>"
            "</tr>"
        )
    return (
        "<table class='bedrock-batch-jobs'><thead><tr><th>job</th><th>status</th><th></th>"
        "<th>processed</th><th>succeeded</th><th>failed</th><th>elapsed</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def timeline_html(status: RunStatus) -> str:
    start, span = _span(status)
    rows = []
    for job in status.jobs:
        colour = STATUS_COLOURS.get(job.status, "#90a4ae")
        if job.submitted_at is None:
            bar = ""
        else:
            left = (job.submitted_at - start) / span * 100
            width = max(((job.ended_at or start + span) - job.submitted_at) / span * 100, 0.5)
            bar = (
                f"<div style='position:absolute;left:{left:.1f}%;width:{width:.1f}%;top:2px;"
                f"bottom:2px;background:{colour}' title='{html.escape(job.status)}'></div>"
            )
        rows.append(
            "<div style='display:flex;align-items:center;gap:6px'>"
            f"<span style='width:3em;text-align:right'>{job.chunk.index}</span>"
            "<div style='position:relative;flex:1;height:14px;background:#eceff1'>"
            f"{bar}</div><span style='width:12em'>{html.escape(job.status)} "
            f"{job_elapsed(job):.1f}s</span></div>"
        )
    return f"<div class='bedrock-batch-timeline'><b>Timeline</b> ({span:.1f}s){''.join(rows)}</div>"


@dataclass(frozen=True)
class ResultSummary:
    """What is shown of a run's result: its first rows, size and rows without an answer
    (read from the file, a batch at a time, for a large run's dataset)."""

    head: pd.DataFrame
    rows: int
    columns: int
    failed: int

    @property
    def shape(self) -> str:
        return f"{self.rows:,} rows x {self.columns} columns"

    @classmethod
    def of(cls, result: Any, head: int = 10) -> ResultSummary:
        if isinstance(result, pd.DataFrame):
            failed = int(result["error"].notna().sum()) if "error" in result else 0
            return cls(result.head(head), len(result), result.shape[1], failed)
        import pyarrow.dataset as pa_dataset

        index = (result.schema.pandas_metadata or {}).get("index_columns", [])
        names = [n for n in result.schema.names if n not in index]
        failed = (
            result.count_rows(filter=pa_dataset.field("error").is_valid())
            if "error" in names
            else 0
        )
        # (no read-ahead: by default the scan would decode 16 batches of every column first)
        first: pd.DataFrame = result.head(
            head, batch_size=max(head, 1), batch_readahead=0, fragment_readahead=0
        ).to_pandas()
        return cls(first, result.count_rows(), len(names), failed)


def frame_html(frame: pd.DataFrame, rows: int = 10) -> str:
    """A DataFrame's first rows as an HTML table (long texts and embeddings shortened)."""
    head = frame.head(rows).copy()
    for col in head.columns:
        if head[col].dtype == object:
            head[col] = head[col].map(_short)
    return str(head.to_html(classes="bedrock-batch-table", border=0, na_rep=""))


def _short(value: Any, limit: int = 120) -> Any:
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = list(value)
        shown = ", ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in items[:4])
        return f"[{shown}, … ({len(items)} values)]" if len(items) > 4 else f"[{shown}]"
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


class RunProgress:
    """Live progress of ``run``: an overall bar in records, a row per job, and once the run
    ends a timeline of its jobs (and, via :meth:`show_result`, the result).

    Create it in the foreground before or after ``run.start()``; it displays itself (unless
    ``display=False``) and listens to the run.
    """

    def __init__(
        self,
        run: BatchRun,
        *,
        widgets: bool | None = None,
        file: IO[str] | None = None,
        display: bool = True,
    ) -> None:
        self.run = run
        self.widgets = widgets_available() if widgets is None else widgets
        self.file = file
        self.finished = False
        self._lock = threading.Lock()
        total = run.num_rows
        self.widget: Any = None
        if self.widgets:
            import ipywidgets as w  # type: ignore[import-untyped]

            self.bar: tqdm.std.tqdm[Any] = tqdm.notebook.tqdm(
                total=total, desc="records", unit="rec", display=False
            )
            self.header = w.HTML(f"<b>{html.escape(run.run_id)}</b>")
            self.jobs = w.HTML()
            self.timeline = w.HTML()
            self.result = w.HTML()
            self.widget = w.VBox(
                [self.header, self.bar.container, self.jobs, self.timeline, self.result]
            )
            self.widget.add_class("bedrock-batch-progress")
            if display:
                from IPython.display import display as show

                _display: Any = show
                _display(self.widget)
        else:
            self.bar = tqdm.std.tqdm(
                total=total,
                desc=run.run_id,
                unit="rec",
                file=file if file is not None else sys.stderr,
                mininterval=0,
                dynamic_ncols=False,
                ncols=100,
            )
        run.add_listener(self.update)

    # ---- updates (any thread) ------------------------------------------------------------

    def update(self, status: RunStatus) -> None:
        with self._lock:
            if self.finished:
                return
            if status.total_records:
                self.bar.total = status.total_records
            self.bar.n = status.processed
            self.bar.set_postfix_str(
                f"{status.phase}, {status.finished_jobs}/{len(status.jobs)} jobs", refresh=False
            )
            self.bar.refresh()
            if self.widgets:
                note = f"<br><small>{html.escape(status.note)}</small>" if status.note else ""
                self.header.value = (
                    f"<b>{html.escape(status.run_id)}</b> — {html.escape(phase_line(status))}{note}"
                )
                self.jobs.value = jobs_html(status)
            if status.done:
                self.finished = True
                self._finish(status)

    def _finish(self, status: RunStatus) -> None:
        if status.phase == "done" and status.failed == 0:
            self.bar.n = self.bar.total or self.bar.n
        self.bar.close()
        if self.widgets:
            self.timeline.value = timeline_html(status) if status.jobs else ""
        else:
            parts = [phase_line(status)]
            if status.note:
                parts.append(status.note)
            if status.jobs:
                parts += [jobs_text(status), timeline_text(status)]
            self._write("\n".join(parts))

    def show_result(self, result: Any, name: str | None = None) -> None:
        """Show the result table and the variable it was bound to (any thread)."""
        summary = ResultSummary.of(result, head=5)
        shape = summary.shape
        where = f" bound to <code>{html.escape(name)}</code>" if name else ""
        if self.widgets:
            self.result.value = (
                f"<div><b>Result</b> ({shape}){where}</div>{frame_html(summary.head, rows=5)}"
            )
        else:
            self._write(f"Result ({shape})" + (f" bound to {name}" if name else ""))

    def show_error(self, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        if self.widgets:
            self.result.value = f"<div style='color:#c62828'>{html.escape(message)}</div>"
        else:
            self._write(message)

    def _write(self, text: str) -> None:
        out = self.file if self.file is not None else sys.stderr
        print(text, file=out, flush=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self.widget is not None:
            return self.widget._repr_mimebundle_(**kwargs)
        return {"text/plain": str(self.run.status())}
