"""``bedrock_batch_nb.form(df)``: an ipywidgets form to build, try and launch a batch run.

:class:`BatchForm` keeps every widget as an attribute and every button's behaviour in an
``on_*`` method, so tests fill in ``.value`` s, call ``button.click()`` and read the state,
the messages and the result in plain Python.  Problems show in the ``messages`` panel
beside the fields, never as tracebacks.  The run's background thread only replaces widget
values (progress, result table, messages); it never writes into an ``Output`` widget.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ipywidgets as w  # type: ignore[import-untyped]
import pandas as pd

from ..aws import load_client_models
from ..errors import BatchInputError, BedrockBatchError
from ..models import resolve_adapter
from ..pricing import estimate
from ..progress import ResultSummary, RunProgress, frame_html
from ..run import BatchRun
from ._data import columns_of, resolve_data, variable_name
from ._launch import check_before_start, collect_what_imports_left

BUILTIN_MODELS = (
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "amazon.nova-micro-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-pro-v1:0",
    "meta.llama3-1-8b-instruct-v1:0",
    "meta.llama3-1-70b-instruct-v1:0",
    "mistral.mistral-7b-instruct-v0:2",
    "mistral.mistral-large-2402-v1:0",
    "amazon.titan-embed-text-v2:0",
)
"""Models offered when ListFoundationModels cannot be called (no credentials, no network)."""

LABEL = {"description_width": "9em"}
WIDE = w.Layout(width="38em")


def supported(model_id: str) -> bool:
    """True when this package has an adapter for ``model_id``."""
    try:
        resolve_adapter(model_id)
    except BedrockBatchError:
        return False
    return True


def model_choices(region: str | None = None) -> list[str]:
    """Model ids from ListFoundationModels that this package has adapters for; the built-in
    list when the call fails or finds none."""
    try:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "bedrock",
            region_name=region,
            config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
        )
        summaries = client.list_foundation_models().get("modelSummaries", [])
    except Exception:
        return list(BUILTIN_MODELS)
    ids = sorted({s["modelId"] for s in summaries if supported(s.get("modelId", ""))})
    return ids or list(BUILTIN_MODELS)


def _optional_float(text: str, name: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise BatchInputError(
            f"{name} must be a number (or empty for the model's default)."
        ) from None


class BatchForm:
    """The form; see the module docstring.  ``state`` is idle, running, done, stopped or
    failed; ``run`` the last launched run, ``result`` its DataFrame once it ends."""

    def __init__(
        self,
        data: Any = None,
        *,
        name: str | None = None,
        model: str | None = None,
        out: str | None = None,
        namespace: dict[str, Any] | None = None,
        models: Iterable[str] | None = None,
        **options: Any,
    ) -> None:
        self.data = data
        self.namespace: dict[str, Any] = namespace if namespace is not None else {}
        self.options = options
        self.run: BatchRun | None = None
        self.result: Any = None
        self.preview_frame: pd.DataFrame | None = None
        self.progress: RunProgress | None = None
        self.state = "idle"
        self._waiter: threading.Thread | None = None
        if name is None and data is not None:
            name = variable_name(data, self.namespace)
        choices = list(models) if models is not None else model_choices(options.get("region"))

        self.source = w.Text(
            value=name or "",
            description="Data",
            placeholder="DataFrame variable, path, s3://… or hf://…",
            style=LABEL,
            layout=WIDE,
        )
        self.columns = w.HTML()
        self.model = w.Combobox(
            value=model or (choices[0] if choices else ""),
            options=choices,
            ensure_option=False,
            description="Model",
            placeholder="model id, inference profile id or ARN",
            style=LABEL,
            layout=WIDE,
        )
        self.model_info = w.HTML()
        self.prompt = w.Textarea(
            description="Prompt",
            placeholder="Tell me a joke about {topic} in less than 50 words.",
            rows=4,
            style=LABEL,
            layout=WIDE,
        )
        self.system = w.Textarea(
            description="System prompt", rows=2, style=LABEL, layout=WIDE, placeholder="optional"
        )
        self.max_tokens = w.BoundedIntText(
            value=options.pop("max_tokens", 512),
            min=1,
            max=1_000_000,
            description="Max tokens",
            style=LABEL,
        )
        self.temperature = w.Text(
            value=_text(options.pop("temperature", None)),
            description="Temperature",
            placeholder="model default",
            style=LABEL,
        )
        self.top_p = w.Text(
            value=_text(options.pop("top_p", None)),
            description="Top p",
            placeholder="model default",
            style=LABEL,
        )
        self.text_column = w.Text(
            value=options.pop("input_text_column", "input_text"),
            description="Text column",
            style=LABEL,
        )
        self.records_per_job = w.BoundedIntText(
            value=options.pop("max_records_per_job", 1000),
            min=1,
            max=1_000_000,
            description="Records/job",
            style=LABEL,
        )
        self.concurrent_jobs = w.BoundedIntText(
            value=options.pop("max_concurrent_jobs", 10),
            min=1,
            max=10_000,
            description="Jobs at once",
            style=LABEL,
        )
        self.job_name_prefix = w.Text(
            value=options.pop("job_name_prefix", "batch"), description="Job name", style=LABEL
        )
        self.out = w.Text(value=out or "results", description="Result into", style=LABEL)
        self.sample_rows = w.BoundedIntText(
            value=3, min=1, max=100, description="Sample rows", style=LABEL
        )

        self.preview_button = w.Button(description="Preview", icon="eye")
        self.invoke_button = w.Button(description="Try on samples", icon="flask")
        self.validate_button = w.Button(description="Validate", icon="check")
        self.launch_button = w.Button(description="Launch", icon="play", button_style="primary")
        self.stop_button = w.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True
        )
        self.resume_id = w.Text(
            description="Resume run",
            placeholder="run id, after a kernel restart (list_runs() shows them)",
            style=LABEL,
            layout=WIDE,
        )
        self.resume_button = w.Button(description="Resume", icon="repeat")
        self.resume_button.on_click(self.on_resume)
        self.preview_button.on_click(self.on_preview)
        self.invoke_button.on_click(self.on_invoke)
        self.validate_button.on_click(self.on_validate)
        self.launch_button.on_click(self.on_launch)
        self.stop_button.on_click(self.on_stop)

        self.messages = w.HTML(layout=w.Layout(width="28em", padding="0 0 0 1em"))
        self.preview_table = w.HTML()
        self.plan_table = w.HTML()
        self.progress_box = w.VBox()
        self.result_table = w.HTML()
        for widget, cls in (
            (self.messages, "bedrock-batch-messages"),
            (self.preview_table, "bedrock-batch-preview"),
            (self.plan_table, "bedrock-batch-plan"),
            (self.result_table, "bedrock-batch-result"),
        ):
            widget.add_class(cls)

        params = w.HBox(
            [
                w.VBox([self.max_tokens, self.temperature, self.top_p, self.text_column]),
                w.VBox(
                    [
                        self.records_per_job,
                        self.concurrent_jobs,
                        self.job_name_prefix,
                        self.out,
                        self.sample_rows,
                    ]
                ),
            ]
        )
        fields = w.VBox(
            [
                self.source,
                self.columns,
                self.model,
                self.model_info,
                self.prompt,
                self.system,
                params,
            ]
        )
        buttons = w.HBox(
            [
                self.preview_button,
                self.invoke_button,
                self.validate_button,
                self.launch_button,
                self.stop_button,
            ]
        )
        self.widget = w.VBox(
            [
                w.HBox([fields, self.messages]),
                buttons,
                w.HBox([self.resume_id, self.resume_button]),
                self.preview_table,
                self.plan_table,
                self.progress_box,
                self.result_table,
            ]
        )
        self.widget.add_class("bedrock-batch-form")
        self.source.observe(lambda _: self._show_columns(), names="value")
        self.model.observe(lambda _: self._show_model(), names="value")
        self._show_columns()
        self._show_model()
        collect_what_imports_left()

    # ---- what the fields say -------------------------------------------------------------

    def _data(self) -> Any:
        text = self.source.value.strip()
        if text:
            return resolve_data(text, self.namespace)
        if self.data is None:
            raise BatchInputError(
                "Choose the data: a DataFrame variable, a path, s3://… or hf://… in Data."
            )
        return self.data

    def _show_columns(self, columns: list[str] | None = None) -> None:
        if columns is None:
            try:
                columns = columns_of(self._data())
            except BedrockBatchError:
                columns = None
        if columns is None:
            self.columns.value = (
                "<small>Columns are read from the data on Preview or Validate.</small>"
            )
            return
        names = ", ".join(f"<code>{{{html.escape(c)}}}</code>" for c in columns)
        self.columns.value = f"<small>Columns for the prompt: {names}</small>"

    def _show_model(self) -> None:
        model = self.model.value.strip()
        if not model:
            self.model_info.value = ""
            return
        try:
            adapter = resolve_adapter(model)
        except BedrockBatchError:
            self.model_info.value = (
                "<small style='color:#c62828'>No adapter for this model id.</small>"
            )
            return
        if adapter.kind == "embedding":
            text = (
                f"{html.escape(adapter.family)}: embedding model; leave the prompt empty to "
                "embed the Text column, or write a template that renders the text."
            )
        else:
            text = f"{html.escape(adapter.family)}: text model; the prompt is required."
        self.model_info.value = f"<small>{text}</small>"

    def build_run(self) -> BatchRun:
        """A :class:`BatchRun` from the fields (raises :class:`BatchInputError`)."""
        model = self.model.value.strip()
        if not model:
            raise BatchInputError("Choose a model (or type its id) in Model.")
        options = dict(self.options)
        options.update(
            system_prompt=self.system.value.strip() or None,
            max_tokens=self.max_tokens.value,
            temperature=_optional_float(self.temperature.value, "Temperature"),
            top_p=_optional_float(self.top_p.value, "Top p"),
            input_text_column=self.text_column.value.strip() or "input_text",
            max_records_per_job=self.records_per_job.value,
            max_concurrent_jobs=self.concurrent_jobs.value,
            job_name_prefix=self.job_name_prefix.value.strip() or "batch",
        )
        prompt = self.prompt.value.strip() or None
        return BatchRun(self._data(), model, prompt, **options)

    # ---- buttons -------------------------------------------------------------------------

    def on_preview(self, _: Any = None) -> None:
        """Show the rendered prompts (and request bodies) of the sample rows."""
        self._guard(lambda: self._preview(invoke=False))

    def on_invoke(self, _: Any = None) -> None:
        """Show the model's on-demand answers for the sample rows."""
        self._guard(lambda: self._preview(invoke=True))

    def on_validate(self, _: Any = None) -> None:
        """Check everything; show the jobs and the estimated cost."""
        self._guard(self._validate)

    def on_launch(self, _: Any = None) -> None:
        """Check and start the run in the background (a large dataset's rows are checked
        there: `check_before_start`); progress and result show below."""
        self._guard(self._launch)

    def on_resume(self, _: Any = None) -> None:
        """Re-attach to the run named in "Resume run" (from its journal on S3): keep
        waiting, submit what was never submitted, collect; progress and result below."""
        self._guard(self._resume)

    def on_stop(self, _: Any = None) -> None:
        """Stop the running jobs; what finished is collected and shown."""
        if self.run is not None and not self.run.done:
            self.run.stop()
            self.say("Stopping: the running jobs are being stopped; finished records are kept.")
        self.stop_button.disabled = True

    def _preview(self, *, invoke: bool) -> None:
        run = self.build_run()
        frame = run.preview(self.sample_rows.value, invoke=invoke)
        self._show_columns([str(c) for c in run.source.head(1).columns])  # (not the whole)
        self.preview_frame = frame
        title = "Answers of" if invoke else "Preview of"
        self.preview_table.value = (
            f"<b>{title} {len(frame)} sample row(s)</b>{frame_html(frame, rows=len(frame))}"
        )
        errors = int(frame["error"].notna().sum()) if "error" in frame else 0
        if errors:
            self.say(f"{errors} sample row(s) came back with an error: see the table.", "warning")
        else:
            self.say(f"{title} {len(frame)} sample row(s) below. Nothing was submitted.", "ok")

    def _validate(self) -> None:
        run = self.build_run()
        plan = run.validate()
        self._show_columns(run.source.columns)
        cost = estimate(run)
        self.plan_table.value = f"<b>Jobs</b>{plan.frame().to_html(index=False, border=0)}"
        self.say(
            f"Ready: {plan.records:,} records in {plan.jobs} job(s). {cost.summary()}",
            "ok",
        )

    def _launch(self) -> None:
        if self.run is not None and not self.run.done:
            raise BatchInputError(f"{self.run.run_id} is still running: Stop it first.")
        out = self.out.value.strip()
        if out and not out.isidentifier():
            raise BatchInputError(f"Result into: {out!r} is not a valid Python variable name.")
        self._start(self.build_run(), out)

    def _resume(self) -> None:
        if self.run is not None and not self.run.done:
            raise BatchInputError(f"{self.run.run_id} is still running: Stop it first.")
        run_id = self.resume_id.value.strip()
        if not run_id:
            raise BatchInputError("Resume run: give the id of the run to re-attach to.")
        out = self.out.value.strip()
        if out and not out.isidentifier():
            raise BatchInputError(f"Result into: {out!r} is not a valid Python variable name.")
        where = {k: self.options[k] for k in ("bucket", "s3_prefix", "region") if k in self.options}
        self._start(BatchRun.resume(run_id, **where), out)

    def _start(self, run: BatchRun, out: str) -> None:
        check_before_start(run)  # (a large dataset's rows: in the background)
        self.result = None
        self.result_table.value = ""
        self.progress = RunProgress(run, widgets=True, display=False)
        self.progress_box.children = (self.progress.widget,)
        run.start()
        self.run = run
        self.state = "running"
        if out:
            self.namespace[f"{out}_run"] = run
        self.launch_button.disabled = True
        self.stop_button.disabled = False
        self.say(f"Launched {run.run_id}: it runs in the background; the kernel stays free.", "ok")
        self._waiter = threading.Thread(
            target=self._finish, args=(run, out), name=f"{run.run_id}-form", daemon=True
        )
        self._waiter.start()

    def _finish(self, run: BatchRun, out: str) -> None:
        """In a background thread: wait for the run, then bind and show the result."""
        try:
            frame = run.wait()
        except BaseException as exc:
            self.state = "failed"
            if isinstance(exc, BatchInputError):  # a large dataset's rows, checked there
                self.show_problems(exc.problems)
            else:
                self.say(f"{run.run_id} failed: {type(exc).__name__}: {exc}", "error")
        else:
            self.result = frame
            self.state = run.status().phase
            where = ""
            if out:
                self.namespace[out] = frame
                where = f", bound to <code>{html.escape(out)}</code>"
            summary = ResultSummary.of(frame)
            self.result_table.value = (
                f"<b>Result</b> ({summary.shape}{where}){frame_html(summary.head)}"
            )
            failed = summary.failed
            self._say_html(
                f"{html.escape(run.run_id)} {html.escape(self.state)}: "
                f"{summary.rows - failed:,} answered, {failed:,} without an answer{where}.",
                "ok" if not failed else "warning",
            )
        finally:
            self.launch_button.disabled = False
            self.stop_button.disabled = True

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the launched run is finished and shown; return its result."""
        if self._waiter is not None:
            self._waiter.join(timeout)
        return self.result

    # ---- messages ------------------------------------------------------------------------

    def say(self, text: str, level: str = "ok") -> None:
        """Show one message (plain text) in the messages panel."""
        self._say_html(html.escape(text), level)

    def _say_html(self, markup: str, level: str) -> None:
        colour = {"ok": "#2e7d32", "warning": "#e65100", "error": "#c62828"}[level]
        self.messages.value = (
            f"<div class='bedrock-batch-{level}' style='color:{colour}'>{markup}</div>"
        )

    def show_problems(self, problems: Iterable[str]) -> None:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        self.messages.value = (
            "<div class='bedrock-batch-problems' style='color:#c62828'>"
            f"<b>Please fix:</b><ul style='padding-left:1.2em'>{items}</ul></div>"
        )

    @property
    def message(self) -> str:
        """The messages panel as plain text."""
        text = re.sub(r"<li>", "\n- ", self.messages.value)
        return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()

    @property
    def problems(self) -> list[str]:
        """The problems the messages panel shows (empty when it shows none)."""
        if "bedrock-batch-problems" not in self.messages.value:
            return []
        return [
            html.unescape(item.split("</li>")[0]) for item in self.messages.value.split("<li>")[1:]
        ]

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BedrockBatchError as exc:
            self.show_problems(getattr(exc, "problems", None) or [str(exc)])
        except (FileNotFoundError, ValueError) as exc:
            self.show_problems([f"{type(exc).__name__}: {exc}"])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def form(
    data: Any = None,
    *,
    model: str | None = None,
    out: str = "results",
    namespace: Mapping[str, Any] | None = None,
    **options: Any,
) -> BatchForm:
    """An ipywidgets form over ``data`` (a DataFrame, a path, ``s3://…`` or ``hf://…``);
    display it by leaving it last in a cell.  Other keywords are engine options
    (:class:`~bedrock_batch_nb.config.RunConfig` fields) used as the form's defaults.

    The result DataFrame is bound to the notebook variable named in "Result into".
    """
    ns: Any = namespace
    if ns is None:
        from IPython.core.getipython import get_ipython

        # (IPython 8, the last for Python 3.10, does not annotate it)
        shell = get_ipython()  # type: ignore[no-untyped-call,unused-ignore]
        ns = shell.user_ns if shell is not None else {}
    name = data if isinstance(data, str) else None
    load_client_models()  # (not under the first Launch: see aws.load_client_models)
    return BatchForm(
        None if isinstance(data, str) else data,
        name=name,
        model=model,
        out=out,
        namespace=ns,
        **options,
    )
