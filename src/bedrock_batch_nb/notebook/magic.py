"""The ``%%bedrock_batch`` cell magic and the ``%bedrock_batch_form`` line magic.

``%load_ext bedrock_batch_nb`` registers :class:`BedrockBatchMagic`, a traitlets-configurable
``Magics`` class (``%config BedrockBatchMagic.bucket = "my-bucket"``).  The magic line names
the data and the options (``%%bedrock_batch?`` lists them); the cell body is the prompt
template, passed to the engine as it is: never formatted against the notebook's variables
(IPython expands ``$var`` / ``{var}`` in the magic *line* only).

Errors a user can fix (bad flag, unknown variable, unknown model, missing column, ...) are
one short :class:`~IPython.core.error.UsageError` each; ``%config
BedrockBatchMagic.show_tracebacks = True`` raises the original exception instead.
"""

from __future__ import annotations

import ast
import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from IPython.core import magic as _magic
from IPython.core import magic_arguments as _margs
from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from traitlets import Bool, Dict, Int, Unicode

from ..aws import load_client_models
from ..config import option_names, unknown_option
from ..errors import BedrockBatchError
from ..pricing import CostEstimate, estimate
from ..progress import RunProgress
from ..run import BatchRun, RunPlan, list_runs
from ._data import resolve_data
from ._launch import check_before_start, collect_what_imports_left

FLAG_OPTIONS = {
    "system": "system_prompt",
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop": "stop_sequences",
    "records_per_job": "max_records_per_job",
    "concurrent_jobs": "max_concurrent_jobs",
    "max_jobs": "max_num_jobs",
    "max_records": "max_records_total",
    "job_name_prefix": "job_name_prefix",
    "bucket": "bucket",
    "role": "role_arn",
    "region": "region",
    "s3_prefix": "s3_prefix",
    "text_column": "input_text_column",
    "dimensions": "dimensions",
    "prompt_id": "prompt_id",
    "invocation_type": "invocation_type",
    "poll_interval": "poll_interval",
    "timeout_hours": "timeout_hours",
}
"""Magic flag (argparse dest) → :class:`~bedrock_batch_nb.config.RunConfig` field."""

_F = TypeVar("_F", bound=Callable[..., Any])
_margs_untyped: Any = _margs


# IPython's magic_arguments is untyped: typed wrappers of its decorators and parser.
def magic_arguments() -> Callable[[_F], _F]:
    return cast("Callable[[_F], _F]", _margs_untyped.magic_arguments())


def argument(*args: Any, **kwargs: Any) -> Callable[[_F], _F]:
    return cast("Callable[[_F], _F]", _margs_untyped.argument(*args, **kwargs))


def parse_argstring(magic_func: Any, line: str) -> Any:
    """Parse the magic line; quoted values lose their quotes (IPython splits the line the
    non-POSIX way, which keeps them, so that Windows paths survive)."""
    args = _margs_untyped.parse_argstring(magic_func, line)
    for name, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, name, unquote(value))
        elif isinstance(value, list):
            setattr(args, name, [unquote(v) if isinstance(v, str) else v for v in value])
    return args


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def line_cell_magic(func: _F) -> _F:
    return cast("_F", _magic.line_cell_magic(func))


def line_magic(func: _F) -> _F:
    return cast("_F", _magic.line_magic(func))


HELP_HINT = "See %%bedrock_batch? for the options."


def engine_option_names() -> list[str]:
    return [*option_names(), "hf_split"]


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` → (key, value); the value is a Python literal when it parses as one."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise UsageError(f"--option takes key=value, not {text!r}. {HELP_HINT}")
    if key not in engine_option_names():
        raise UsageError(f"{unknown_option(key, engine_option_names())} (in --option)")
    try:
        value: Any = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key, value


def prompt_from_cell(cell: str | None) -> str | None:
    """The cell body as the prompt template: surrounding blank lines and trailing spaces
    dropped, nothing else touched (no formatting against the notebook's variables)."""
    if cell is None:
        return None
    lines = cell.rstrip().split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    text = "\n".join(lines)
    return text or None


class DryRun:
    """What ``--dry-run`` shows: the plan of jobs and the estimated tokens and cost."""

    def __init__(self, run: BatchRun, plan: RunPlan, cost: CostEstimate) -> None:
        self.run = run
        self.plan = plan
        self.jobs = plan.frame()
        self.cost = cost

    def summary(self) -> str:
        c = self.run.config
        return (
            f"Dry run {self.run.run_id}: {self.plan.records:,} records in {self.plan.jobs} "
            f"job(s) of at most {c.max_records_per_job:,} records, {c.max_concurrent_jobs} at "
            f"a time, model {c.model_id}. Nothing was submitted.\n{self.cost.summary()}"
        )

    def __repr__(self) -> str:
        return f"{self.summary()}\n{self.jobs.to_string(index=False)}"

    def _repr_html_(self) -> str:
        text = html.escape(self.summary()).replace("\n", "<br>")
        return f"<p>{text}</p>{self.jobs.to_html(index=False, border=0)}"


@magics_class
class BedrockBatchMagic(Magics):
    """``%%bedrock_batch`` and ``%bedrock_batch_form``; defaults are config traits."""

    model = Unicode(None, allow_none=True, help="Default model id (--model).").tag(config=True)
    bucket = Unicode(None, allow_none=True, help="Default S3 bucket (--bucket).").tag(config=True)
    role = Unicode(None, allow_none=True, help="Default job service role ARN (--role).").tag(
        config=True
    )
    region = Unicode(None, allow_none=True, help="Default AWS Region (--region).").tag(config=True)
    concurrent_jobs = Int(
        None, allow_none=True, help="Default jobs at once (--concurrent-jobs)."
    ).tag(config=True)
    records_per_job = Int(
        None, allow_none=True, help="Default records per job (--records-per-job)."
    ).tag(config=True)
    options = Dict(
        help="Default values of any other engine option (RunConfig field), e.g. "
        "{'poll_interval': 5.0, 's3_prefix': 'team-a'}."
    ).tag(config=True)
    show_tracebacks = Bool(
        False, help="Raise the original exception (full traceback) instead of a UsageError."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # (IPython 8, the last for Python 3.10, does not annotate it)
        super().__init__(shell=shell, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        self.runs: list[BatchRun] = []
        """Every run this magic launched, newest last."""

    @property
    def namespace(self) -> dict[str, Any]:
        """The notebook's variables."""
        assert self.shell is not None
        ns: dict[str, Any] = self.shell.user_ns
        return ns

    # ---- %%bedrock_batch -----------------------------------------------------------------

    @magic_arguments()
    @argument("data", nargs="?", help="DataFrame variable, local path, s3://… or hf://dataset.")
    @argument("-m", "--model", help="Model id, inference-profile id or ARN.")
    @argument("-o", "--out", help="Variable that receives the result DataFrame.")
    @argument("--system", help="System prompt (text models).")
    @argument("--max-tokens", type=int, help="Most tokens to generate per record.")
    @argument("--temperature", type=float, help="Sampling temperature.")
    @argument("--top-p", type=float, help="Nucleus sampling.")
    @argument("--top-k", type=int, help="Top-k sampling (families that take it).")
    @argument("--stop", action="append", help="A stop sequence (repeatable).")
    @argument("--records-per-job", type=int, help="Records per batch job.")
    @argument("--concurrent-jobs", type=int, help="Jobs submitted or in progress at once.")
    @argument("--max-jobs", type=int, help="Refuse runs that need more jobs than this.")
    @argument("--max-records", type=int, help="Use only the first N rows.")
    @argument("--job-name-prefix", help="Stem of the run id and job names.")
    @argument("--bucket", help="S3 bucket for inputs, outputs and results.")
    @argument("--role", help="Service role ARN the jobs run as.")
    @argument("--region", help="AWS Region.")
    @argument("--s3-prefix", help="Key prefix of the run's files.")
    @argument("--text-column", help="Column embedding models embed (default input_text).")
    @argument("--dimensions", type=int, help="Embedding size (Titan V2: 256, 512 or 1024).")
    @argument("--prompt-id", help="A registered prompt instead of the cell body.")
    @argument("--invocation-type", choices=["InvokeModel", "Converse"], help="Request format.")
    @argument("--poll-interval", type=float, help="First delay between status polls, seconds.")
    @argument("--timeout-hours", type=int, help="Job timeout, 24-168 hours.")
    @argument("--hf-split", help="Split of an hf:// dataset (default train).")
    @argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="Any other engine option (RunConfig field), e.g. --option normalize=False.",
    )
    @argument(
        "--preview",
        type=int,
        metavar="N",
        help="Show the prompts of N sample rows as a table; submit nothing.",
    )
    @argument("--invoke", action="store_true", help="With --preview: also call the model.")
    @argument(
        "--dry-run",
        action="store_true",
        help="Validate, show the jobs and estimated tokens and cost; submit nothing.",
    )
    @argument("--wait", action="store_true", help="Block until the run is done.")
    @argument("--quiet", action="store_true", help="No progress display.")
    @argument(
        "--resume",
        metavar="RUN_ID",
        help="Re-attach to a run from its journal on S3 (after a kernel restart): keep "
        "waiting, submit what was never submitted, collect. No data or model needed.",
    )
    @argument("--list-runs", action="store_true", help="List the runs in the bucket.")
    @line_cell_magic
    def bedrock_batch(self, line: str, cell: str | None = None) -> Any:
        """Run a Bedrock batch over a dataset: one model answer (or embedding) per row.

        The cell body is the prompt template, with ``{column}`` placeholders (``{{`` and
        ``}}`` for literal braces); leave it out for embedding models (use the line form
        ``%bedrock_batch df --model amazon.titan-embed-text-v2:0 --out emb``).  Without
        --preview or --dry-run the run starts in the background: the run object is bound at
        once to ``<out>_run`` and the result DataFrame to ``<out>`` when it finishes.

        Examples::

            %%bedrock_batch df --model anthropic.claude-3-haiku-20240307-v1:0 --out jokes
            Tell me a joke about {topic} in less than 50 words.

            %%bedrock_batch df --model anthropic.claude-3-haiku-20240307-v1:0 --preview 3
            Tell me a joke about {topic} in less than 50 words.
        """
        with self._user_errors():
            try:
                args = parse_argstring(self.bedrock_batch, line)
            except UsageError as exc:
                raise UsageError(f"%%bedrock_batch: {exc}. {HELP_HINT}") from None
            return self._run_magic(args, prompt_from_cell(cell))

    def _run_magic(self, args: Any, prompt: str | None) -> Any:
        where = self.defaults()
        bucket: str | None = args.bucket or where.get("bucket")
        s3_prefix: str = args.s3_prefix or where.get("s3_prefix") or "bedrock-batch"
        region: str | None = args.region or where.get("region")
        if args.list_runs:
            return list_runs(bucket, s3_prefix=s3_prefix, region=region)
        if args.resume:
            if args.out is not None and not args.out.isidentifier():
                raise UsageError(f"--out {args.out!r} is not a valid Python variable name.")
            watch = {"poll_interval": args.poll_interval} if args.poll_interval else {}
            run = BatchRun.resume(
                args.resume, bucket=bucket, s3_prefix=s3_prefix, region=region, **watch
            )
            return self.launch(run, out=args.out, wait=args.wait, progress=not args.quiet)
        if args.data is None:
            raise UsageError(
                "Name the data first: %%bedrock_batch <DataFrame variable | path | s3://… | "
                f"hf://…> --model <id>. {HELP_HINT}"
            )
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out {args.out!r} is not a valid Python variable name.")
        if args.invoke and args.preview is None:
            raise UsageError("--invoke goes with --preview N (e.g. --preview 3 --invoke).")
        if args.preview is not None and args.preview < 1:
            raise UsageError("--preview N needs N ≥ 1.")
        if args.preview is not None and args.dry_run:
            raise UsageError("Use either --preview N or --dry-run, not both.")
        data = resolve_data(args.data, self.namespace)
        run = self.make_run(data, prompt, args)
        if args.preview is not None:
            return run.preview(args.preview, invoke=args.invoke)
        if args.dry_run:
            plan = run.validate()
            return DryRun(run, plan, estimate(run))
        return self.launch(run, out=args.out, wait=args.wait, progress=not args.quiet)

    def defaults(self) -> dict[str, Any]:
        """Engine options from the config traits (``options``, then the named ones)."""
        options: dict[str, Any] = dict(self.options)
        for trait, field in (
            ("bucket", "bucket"),
            ("role", "role_arn"),
            ("region", "region"),
            ("concurrent_jobs", "max_concurrent_jobs"),
            ("records_per_job", "max_records_per_job"),
        ):
            value = getattr(self, trait)
            if value is not None:
                options[field] = value
        return options

    def make_run(self, data: Any, prompt: str | None, args: Any) -> BatchRun:
        """A :class:`BatchRun` from the traits' defaults, then the flags, then --option."""
        options = self.defaults()
        for dest, field in FLAG_OPTIONS.items():
            value = getattr(args, dest)
            if value is not None:
                options[field] = value
        if args.hf_split is not None:
            options["hf_split"] = args.hf_split
        for text in args.option or ():
            key, value = parse_option(text)
            options[key] = value
        configured_model = options.pop("model_id", None)
        model = args.model or self.model or configured_model
        if not model:
            raise UsageError(
                "No model: pass --model <id> (e.g. anthropic.claude-3-haiku-20240307-v1:0) or "
                "set %config BedrockBatchMagic.model = '<id>'."
            )
        known = engine_option_names()
        unknown = [unknown_option(name, known) for name in options if name not in known]
        if unknown:
            raise UsageError(f"{' '.join(unknown)} (in BedrockBatchMagic.options)")
        options.pop("prompt", None)
        return BatchRun(data, model, prompt, **options)

    def launch(
        self, run: BatchRun, *, out: str | None, wait: bool = False, progress: bool = True
    ) -> Any:
        """Check and start ``run`` (:func:`check_before_start`: a large dataset's rows are
        checked in the background); bind ``<out>_run`` now and ``<out>`` when it ends."""
        check_before_start(run)
        display = RunProgress(run) if progress else None
        run.start()
        self.runs.append(run)
        ns = self.namespace
        if out is not None:
            ns[f"{out}_run"] = run
        if wait:
            try:
                frame = run.wait()
            except KeyboardInterrupt:
                where = f"{out}_run" if out else "the run"
                raise UsageError(
                    f"Stopped waiting; {run.run_id} goes on in the background "
                    f"({where}.stop() stops it)."
                ) from None
            self._bind(frame, out, display)
            return None if out is not None else frame

        def finish(ended: BatchRun) -> None:  # before wait() / await return: no race
            if ended.result is not None and ended.error is None:
                self._bind(ended.result, out, display)
            elif display is not None and ended.error is not None:
                display.show_error(ended.error)

        run.add_done_callback(finish)
        return None if out is not None else run

    def _bind(self, frame: Any, out: str | None, display: RunProgress | None) -> None:
        if out is not None:
            self.namespace[out] = frame
        if display is not None:
            display.show_result(frame, out)

    # ---- %bedrock_batch_form -------------------------------------------------------------

    @magic_arguments()
    @argument("data", nargs="?", help="DataFrame variable, local path, s3://… or hf://dataset.")
    @argument("-m", "--model", help="Model id to start with.")
    @argument("-o", "--out", help="Variable that receives the result DataFrame.")
    @line_magic
    def bedrock_batch_form(self, line: str) -> Any:
        """Show a form to build, preview, validate and launch a batch run."""
        from .form import BatchForm

        with self._user_errors():
            try:
                args = parse_argstring(self.bedrock_batch_form, line)
            except UsageError as exc:
                raise UsageError(f"%bedrock_batch_form: {exc}.") from None
            data = None
            if args.data is not None:
                data = resolve_data(args.data, self.namespace)
            options = self.defaults()
            configured_model = options.pop("model_id", None)
            return BatchForm(
                data,
                name=args.data,
                model=args.model or self.model or configured_model,
                out=args.out,
                namespace=self.namespace,
                **options,
            )

    # ---- errors --------------------------------------------------------------------------

    @contextmanager
    def _user_errors(self) -> Iterator[None]:
        """User-fixable errors → one short UsageError (or the original, with tracebacks)."""
        try:
            yield
        except UsageError:
            raise
        except (BedrockBatchError, FileNotFoundError) as exc:
            if self.show_tracebacks:
                raise
            raise UsageError(user_message(exc)) from None


def user_message(exc: BaseException) -> str:
    """The short text of a user-fixable error."""
    problems = getattr(exc, "problems", None) or [str(exc)]
    return "\n".join(str(p) for p in problems)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext bedrock_batch_nb``: register the magics (configurable via %config), and
    parse the AWS clients' models now rather than under the first run (see
    :func:`aws.load_client_models`)."""
    ipython.register_magics(BedrockBatchMagic(shell=ipython))
    load_client_models()
    collect_what_imports_left()
