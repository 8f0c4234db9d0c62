"""``%%bedrock_batch`` on a real IPython ``InteractiveShell`` against the local emulator."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from bedrock_batch_nb import BatchInputError, BatchRun, UnknownModelError, sources
from bedrock_batch_nb.local import LocalBedrock
from bedrock_batch_nb.notebook import _launch as launching
from bedrock_batch_nb.notebook.magic import BedrockBatchMagic, DryRun, prompt_from_cell

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
JOKE = "Tell me a joke about {topic} in less than 50 words.\n"
ROLE = "arn:aws:iam::123456789012:role/MyBatchRole"


def dry_run(ip: InteractiveShell, line: str, body: str = JOKE) -> DryRun:
    result = ip.run_cell_magic("bedrock_batch", f"{line} --dry-run", body)
    assert isinstance(result, DryRun)
    return result


def usage_error(ip: InteractiveShell, line: str, body: str = JOKE) -> str:
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("bedrock_batch", line, body)
    assert type(info.value) is UsageError  # IPython shows only this exact type briefly
    message = str(info.value)
    assert "\n" not in message, message
    assert "Traceback" not in message
    return message


def wait_for(ns: dict[str, object], name: str, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while name not in ns:
        assert time.monotonic() < deadline, f"{name} was never bound"
        time.sleep(0.02)
    return ns[name]


# ---- arguments ---------------------------------------------------------------------------


def test_flags_become_engine_options(ip: InteractiveShell) -> None:
    line = (
        f"df --model {HAIKU} --system 'Be brief.' --max-tokens 64 --temperature 0.2 "
        "--top-p 0.9 --top-k 40 --stop END --stop STOP --records-per-job 100 "
        "--concurrent-jobs 2 --max-jobs 3 --max-records 140 --job-name-prefix jokes "
        f"--bucket my-bucket --role {ROLE} --region eu-west-1 --s3-prefix team-a "
        "--timeout-hours 48 --poll-interval 0.05 --option tags={'team':'a'} "
        "--option normalize=False --option max_poll_interval=2"
    )
    c = dry_run(ip, line).run.config
    assert c.model_id == HAIKU
    assert c.prompt == JOKE.strip()
    assert (c.system_prompt, c.max_tokens, c.temperature, c.top_p, c.top_k) == (
        "Be brief.",
        64,
        0.2,
        0.9,
        40,
    )
    assert c.stop_sequences == ("END", "STOP")
    assert (c.max_records_per_job, c.max_concurrent_jobs, c.max_num_jobs) == (100, 2, 3)
    assert (c.max_records_total, c.job_name_prefix) == (140, "jokes")
    assert (c.bucket, c.role_arn, c.region, c.s3_prefix) == (
        "my-bucket",
        ROLE,
        "eu-west-1",
        "team-a",
    )
    assert (c.timeout_hours, c.poll_interval, c.max_poll_interval) == (48, 0.05, 2)
    assert c.tags == {"team": "a"}
    assert c.normalize is False


def test_embedding_flags_and_line_form(ip: InteractiveShell, texts: pd.DataFrame) -> None:
    ip.user_ns["docs"] = texts.rename(columns={"input_text": "body"})
    result = ip.run_line_magic(
        "bedrock_batch",
        f"docs --model {TITAN} --text-column body --dimensions 256 --dry-run",
    )
    assert isinstance(result, DryRun)
    assert result.run.config.input_text_column == "body"
    assert result.run.config.dimensions == 256
    assert result.run.config.prompt is None
    assert result.cost.output_tokens == 0


def test_config_traits_are_defaults_and_flags_win(ip: InteractiveShell) -> None:
    ip.run_cell(f"%config BedrockBatchMagic.model = '{HAIKU}'")
    ip.run_cell("%config BedrockBatchMagic.bucket = 'team-bucket'")
    ip.run_cell(f"%config BedrockBatchMagic.role = '{ROLE}'")
    ip.run_cell("%config BedrockBatchMagic.records_per_job = 100")
    ip.run_cell("%config BedrockBatchMagic.concurrent_jobs = 3")
    ip.run_cell("%config BedrockBatchMagic.region = 'us-west-2'")
    ip.run_cell("%config BedrockBatchMagic.options = {'s3_prefix': 'from-config'}")
    c = dry_run(ip, "df").run.config
    assert (c.model_id, c.bucket, c.role_arn) == (HAIKU, "team-bucket", ROLE)
    assert (c.max_records_per_job, c.max_concurrent_jobs, c.region, c.s3_prefix) == (
        100,
        3,
        "us-west-2",
        "from-config",
    )
    c = dry_run(ip, "df --records-per-job 150 --bucket other-bucket").run.config
    assert (c.max_records_per_job, c.bucket) == (150, "other-bucket")
    ip.run_cell("%config BedrockBatchMagic.options = {'max_frame_row': 10}")  # a typo
    message = usage_error(ip, "df")
    assert "did you mean 'max_frame_rows'? (in BedrockBatchMagic.options)" in message


def test_line_variables_expand_but_the_body_is_never_formatted(ip: InteractiveShell) -> None:
    ip.user_ns["n_tokens"] = 77
    ip.user_ns["model"] = HAIKU
    ip.user_ns["topic"] = "SHADOWED"  # a notebook variable named like the column
    body = 'Reply as JSON {{"joke": "..."}} about {topic}.'
    preview = ip.run_cell_magic(
        "bedrock_batch", "df --model $model --max-tokens {n_tokens} --preview 2", body
    )
    assert isinstance(preview, pd.DataFrame)
    assert list(preview["prompt"]) == [
        'Reply as JSON {"joke": "..."} about topic number 0.',
        'Reply as JSON {"joke": "..."} about topic number 1.',
    ]
    assert '"max_tokens": 77' in preview["model_input"].iloc[0]


def test_prompt_from_cell_keeps_the_body() -> None:
    assert prompt_from_cell("\n\n  Hello {x}\n  second line  \n\n") == "  Hello {x}\n  second line"
    assert prompt_from_cell("   \n") is None
    assert prompt_from_cell(None) is None


def test_help_is_the_argument_parser(ip: InteractiveShell) -> None:
    doc = BedrockBatchMagic.bedrock_batch.__doc__ or ""
    for flag in ("--model", "--out", "--preview", "--dry-run", "--wait", "--option"):
        assert flag in doc
    info = ip.object_inspect("%%bedrock_batch")
    assert info["found"]


# ---- errors a user can fix: one UsageError line each -------------------------------------


def test_unknown_model(ip: InteractiveShell) -> None:
    message = usage_error(ip, "df --model anthropic.nonsense-v9 --dry-run")
    assert "Unknown model 'anthropic.nonsense-v9'" in message
    assert "Supported families" in message


def test_missing_column(ip: InteractiveShell) -> None:
    message = usage_error(ip, f"df --model {HAIKU} --dry-run", "A joke about {subject}.")
    assert "'subject'" in message
    assert "'topic'" in message  # the hint lists the columns there are


def test_bad_flag(ip: InteractiveShell) -> None:
    message = usage_error(ip, f"df --model {HAIKU} --temprature 0.3")
    assert "unrecognized arguments: --temprature" in message
    assert "%%bedrock_batch?" in message
    message = usage_error(ip, f"df --model {HAIKU} --max-tokens lots")
    assert "--max-tokens" in message


def test_missing_data_variable(ip: InteractiveShell) -> None:
    message = usage_error(ip, f"dff --model {HAIKU}")
    assert "No variable 'dff'" in message
    assert "s3://" in message


def test_a_split_of_a_dataset_dict_is_named_with_a_dot(
    ip: InteractiveShell, tmp_path: Path
) -> None:
    import datasets

    (tmp_path / "train.csv").write_text("topic\ncats\ndogs\n")
    (tmp_path / "test.csv").write_text("topic\nowls\n")
    files = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}
    ip.user_ns["splits"] = datasets.load_dataset("csv", data_files=files)
    preview = ip.run_cell_magic("bedrock_batch", f"splits.test --model {HAIKU} --preview 5", JOKE)
    assert isinstance(preview, pd.DataFrame)
    assert list(preview["prompt"]) == ["Tell me a joke about owls in less than 50 words."]
    message = usage_error(ip, f"splits --model {HAIKU} --preview 5")
    assert "splits 'train', 'test'" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"--model {HAIKU}", "Name the data"),
        ("df", "No model"),
        (f"df --model {HAIKU} --option nonsense=1", "Unknown option 'nonsense'. Options: "),
        (f"df --model {HAIKU} --option max_pol_interval=2", "did you mean 'max_poll_interval'"),
        (f"df --model {HAIKU} --option poll_interval", "key=value"),
        (f"df --model {HAIKU} --invoke", "--invoke goes with --preview"),
        (f"df --model {HAIKU} --out 1abc", "not a valid Python variable name"),
        (f"df --model {HAIKU} --records-per-job 20", "max_records_per_job=20"),
        ("no/such/file.csv --model x", "No file 'no/such/file.csv'"),
    ],
)
def test_other_user_errors(ip: InteractiveShell, line: str, expected: str) -> None:
    assert expected in usage_error(ip, line)


def test_run_cell_shows_one_line(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    result = ip.run_cell(f"%%bedrock_batch df --model {HAIKU}\nA joke about {{subject}}.")
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr().err.strip()
    assert err.startswith("UsageError: The prompt uses column(s) 'subject'")
    assert len(err.splitlines()) == 1


def test_show_tracebacks_raises_the_original(ip: InteractiveShell) -> None:
    ip.run_cell("%config BedrockBatchMagic.show_tracebacks = True")
    with pytest.raises(UnknownModelError):
        ip.run_cell_magic("bedrock_batch", "df --model nope.nope-v1 --dry-run", JOKE)


# ---- preview, dry run, launch --------------------------------------------------------------


def test_preview_submits_nothing(ip: InteractiveShell, aws: LocalBedrock) -> None:
    preview = ip.run_cell_magic("bedrock_batch", f"df --model {HAIKU} --preview 3", JOKE)
    assert isinstance(preview, pd.DataFrame)
    assert list(preview.columns) == ["prompt", "model_input"]
    assert preview["prompt"].iloc[2] == "Tell me a joke about topic number 2 in less than 50 words."
    assert aws.stats.create_calls == 0
    assert aws.stats.invoke_calls == 0


def test_preview_invoke_calls_the_model_on_demand_only(
    ip: InteractiveShell, aws: LocalBedrock
) -> None:
    preview = ip.run_cell_magic("bedrock_batch", f"df --model {HAIKU} --preview 2 --invoke", JOKE)
    assert isinstance(preview, pd.DataFrame)
    assert preview["response"].notna().all()
    assert preview["error"].isna().all()
    assert aws.stats.invoke_calls == 2
    assert aws.stats.create_calls == 0


def test_dry_run_submits_nothing_and_estimates(ip: InteractiveShell, aws: LocalBedrock) -> None:
    result = dry_run(ip, f"df --model {HAIKU} --records-per-job 100 --max-tokens 100")
    assert list(result.jobs["records"]) == [150]  # a short last job is merged
    assert result.cost.records == 150
    assert result.cost.output_tokens == 150 * 100
    assert result.cost.batch_usd is not None and result.cost.batch_usd > 0
    assert "Nothing was submitted" in repr(result)
    assert "<table" in result._repr_html_()
    assert aws.stats.create_calls == 0


def test_launch_binds_the_run_at_once_and_the_result_when_done(
    ip: InteractiveShell, aws: LocalBedrock, capsys: pytest.CaptureFixture[str]
) -> None:
    returned = ip.run_cell_magic(
        "bedrock_batch",
        f"df --model {HAIKU} --out jokes --records-per-job 100 --poll-interval 0.05",
        JOKE,
    )
    assert returned is None
    run = ip.user_ns["jokes_run"]
    assert isinstance(run, BatchRun)
    jokes = wait_for(ip.user_ns, "jokes")
    assert isinstance(jokes, pd.DataFrame)
    assert len(jokes) == 150
    assert jokes["response"].notna().all()
    assert list(jokes["topic"]) == list(ip.user_ns["df"]["topic"])
    assert run.status().phase == "done"
    assert aws.stats.create_calls >= 1
    time.sleep(0.1)
    err = capsys.readouterr().err
    assert "timeline" in err and "Completed" in err
    assert "bound to jokes" in err


def test_wait_blocks_and_binds(
    ip: InteractiveShell, aws: LocalBedrock, texts: pd.DataFrame
) -> None:
    ip.user_ns["docs"] = texts
    ip.run_line_magic(
        "bedrock_batch",
        f"docs --model {TITAN} --dimensions 256 --out vectors --wait --quiet "
        "--option poll_interval=0.05",
    )
    vectors = ip.user_ns["vectors"]
    assert len(vectors) == 120
    assert len(vectors["embedding"].iloc[0]) == 256
    assert aws.stats.jobs_created == 1


def test_a_large_dataset_starts_at_once_and_its_rows_are_checked_before_any_job(
    ip: InteractiveShell,
    aws: LocalBedrock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Over ``ROWS_CHECKED_IN_THE_CELL`` rows the cell does not read every row: what needs
    no rows is still refused in the cell, and a bad row fails the run before anything is
    submitted; under it, the same bad row is refused in the cell."""
    monkeypatch.setattr(launching, "ROWS_CHECKED_IN_THE_CELL", 100)  # df has 150 rows
    frame = ip.user_ns["df"].copy()
    frame.loc[120, "topic"] = None
    ip.user_ns["df"] = frame
    message = usage_error(ip, f"df --model {HAIKU}", "A joke about {subject}.")
    assert "'subject'" in message and "'topic'" in message
    message = usage_error(ip, f"df --model {HAIKU} --temperature 7")
    assert "temperature" in message
    assert "jokes_run" not in ip.user_ns

    line = f"df --model {HAIKU} --out jokes --option poll_interval=0.05"
    assert ip.run_cell_magic("bedrock_batch", line, JOKE) is None  # started, not refused
    run = ip.user_ns["jokes_run"]
    assert isinstance(run, BatchRun)
    with pytest.raises(BatchInputError, match="120"):
        run.wait(30)
    assert run.status().phase == "failed"
    assert aws.stats.create_calls == 0
    assert "jokes" not in ip.user_ns
    time.sleep(0.1)
    shown = capsys.readouterr().err  # the progress display, in text here
    assert "BatchInputError" in shown and "'topic' is empty or null" in shown, shown

    monkeypatch.setattr(launching, "ROWS_CHECKED_IN_THE_CELL", 150)
    message = usage_error(ip, line.replace("jokes", "more_jokes"))
    assert "120" in message
    assert "more_jokes_run" not in ip.user_ns


def test_a_big_csv_is_read_on_the_runs_thread_not_in_the_cell(
    ip: InteractiveShell, aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV big enough to be converted before it is read: its size and columns are not
    known in the cell, so the conversion, the column check and the rows' check all happen
    on the run's thread; a missing column then fails the run before any job."""
    monkeypatch.setattr(sources, "STREAM_MIN_BYTES", 0)  # every CSV counts as big
    converted_on: list[str] = []
    real_convert = sources._convert_to_parquet

    def watched(*args: Any, **kwargs: Any) -> Any:
        converted_on.append(threading.current_thread().name)
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(sources, "_convert_to_parquet", watched)
    path = tmp_path / "topics.csv"
    ip.user_ns["df"].to_csv(path, index=False)
    line = f"{path} --model {HAIKU} --quiet --records-per-job 100 --option poll_interval=0.05"
    bad = ip.run_cell_magic("bedrock_batch", f"{line} --out bad", "A joke about {subject}.")
    assert bad is None
    with pytest.raises(BatchInputError, match="'subject'"):
        ip.user_ns["bad_run"].wait(30)
    assert aws.stats.create_calls == 0
    ip.run_cell_magic("bedrock_batch", f"{line} --out jokes", JOKE)
    jokes = ip.user_ns["jokes_run"].wait(30)
    assert len(jokes) == 150 and jokes["response"].notna().all()
    assert len(converted_on) == 2 and "MainThread" not in converted_on, converted_on


def test_launch_without_out_returns_the_run(ip: InteractiveShell, aws: LocalBedrock) -> None:
    run = ip.run_cell_magic(
        "bedrock_batch", f"df --model {HAIKU} --quiet --option poll_interval=0.05", JOKE
    )
    assert isinstance(run, BatchRun)
    assert len(run.wait(30)) == 150


def test_form_line_magic(ip: InteractiveShell, aws: LocalBedrock) -> None:
    from bedrock_batch_nb.notebook.form import BatchForm

    form = ip.run_line_magic("bedrock_batch_form", f"df --model {HAIKU} --out jokes")
    assert isinstance(form, BatchForm)
    assert form.source.value == "df"
    assert form.model.value == HAIKU
    assert form.out.value == "jokes"
    assert "{topic}" in form.columns.value


def test_resume_and_list_runs_from_the_magic(ip: InteractiveShell, aws: LocalBedrock) -> None:
    aws.timings.records_per_second = 100  # slow enough to stop in the middle
    first = ip.run_cell_magic(
        "bedrock_batch",
        f"df --model {HAIKU} --quiet --records-per-job 100 --concurrent-jobs 1 "
        "--poll-interval 0.05",
        JOKE,
    )
    while not any(job.status == "InProgress" for job in first.status().jobs):
        time.sleep(0.02)
    first.stop()
    first.wait(30)  # as after a kernel restart: the run is left unfinished

    runs = ip.run_line_magic("bedrock_batch", "--list-runs")
    assert runs.set_index("run_id").loc[first.run_id, "phase"] == "stopped"

    aws.timings.records_per_second = 100_000
    ip.run_line_magic(
        "bedrock_batch",
        f"--resume {first.run_id} --out jokes --wait --quiet --poll-interval 0.05",
    )
    jokes = ip.user_ns["jokes"]
    assert list(jokes["topic"]) == list(ip.user_ns["df"]["topic"])
    assert jokes["response"].notna().sum() >= 100  # the unsubmitted job ran after resume
    assert len({j.name for j in ip.user_ns["jokes_run"].status().jobs}) == aws.stats.jobs_created


def test_resume_of_an_unknown_run_is_one_usage_error(
    ip: InteractiveShell, aws: LocalBedrock
) -> None:
    with pytest.raises(UsageError, match="No run 'nope-1'"):
        ip.run_line_magic("bedrock_batch", "--resume nope-1")


FIRST_RUN_PARSES = """
import os, sys
os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
                   "AWS_SECRET_ACCESS_KEY": "x"})
from botocore.loaders import JSONFileLoader
from IPython.core.interactiveshell import InteractiveShell
from bedrock_batch_nb.aws import Clients

if sys.argv[1] == "load_ext":
    InteractiveShell.instance().run_line_magic("load_ext", "bedrock_batch_nb")
parsed = []
load_file = JSONFileLoader.load_file
JSONFileLoader.load_file = lambda self, path, *a: parsed.append(path) or load_file(self, path, *a)
Clients.create()  # what a run's thread does first
print(len(parsed))
"""


@pytest.mark.parametrize("loaded", [True, False])
def test_load_ext_parses_the_clients_models_so_a_first_run_does_not(loaded: bool) -> None:
    # In a fresh interpreter: the models botocore parses (JSON, holding the GIL) when a
    # process's first clients are created; a run creates its clients on its own thread,
    # where the parse would stall the kernel's event loop.
    argv = [sys.executable, "-c", FIRST_RUN_PARSES, "load_ext" if loaded else "none"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    parsed = int(done.stdout.split()[-1])
    assert parsed == 0 if loaded else parsed > 0, done.stdout
