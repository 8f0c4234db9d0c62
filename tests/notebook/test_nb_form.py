"""The ipywidgets form and the progress widgets, driven in plain Python: set values, click
buttons, read state, messages and results."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest

from bedrock_batch_nb import BatchRun
from bedrock_batch_nb.local import LocalBedrock
from bedrock_batch_nb.notebook import _launch as launching
from bedrock_batch_nb.notebook.form import BUILTIN_MODELS, BatchForm, form, model_choices
from bedrock_batch_nb.progress import RunProgress, timeline_text

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
FAST = {"poll_interval": 0.05}


def make_form(data: Any, ns: dict[str, Any] | None = None, **kwargs: Any) -> BatchForm:
    ns = {} if ns is None else ns
    ns.setdefault("df", data)
    f = form(data, namespace=ns, **{**FAST, **kwargs})
    f.model.value = kwargs.get("model", HAIKU)
    return f


def test_model_picker_lists_supported_models_from_bedrock(aws: LocalBedrock) -> None:
    choices = model_choices()
    assert HAIKU in choices and TITAN in choices
    assert aws.stats.foundation_model_calls == 1


def test_model_picker_falls_back_to_the_builtin_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert model_choices() == list(BUILTIN_MODELS)


def test_fields_show_the_data_columns_and_the_model_kind(
    aws: LocalBedrock, topics: pd.DataFrame
) -> None:
    f = make_form(topics)
    assert f.source.value == "df"  # found by identity in the namespace
    assert "{topic}" in f.columns.value
    assert "text model" in f.model_info.value
    f.model.value = TITAN
    assert "embedding model" in f.model_info.value
    f.model.value = "nobody.nothing-v1"
    assert "No adapter" in f.model_info.value
    assert HAIKU in f.model.options


def test_preview_shows_rendered_prompts_and_submits_nothing(
    aws: LocalBedrock, topics: pd.DataFrame
) -> None:
    f = make_form(topics)
    f.prompt.value = "Tell me a joke about {topic}."
    f.sample_rows.value = 2
    f.preview_button.click()
    assert f.problems == []
    assert f.preview_frame is not None and len(f.preview_frame) == 2
    assert "Tell me a joke about topic number 1." in f.preview_table.value
    assert "Nothing was submitted" in f.messages.value
    assert aws.stats.create_calls == 0 and aws.stats.invoke_calls == 0


def test_preview_of_a_big_csv_reads_only_its_start(
    aws: LocalBedrock, topics: pd.DataFrame, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bedrock_batch_nb import sources

    monkeypatch.setattr(sources, "STREAM_MIN_BYTES", 0)  # every CSV counts as big
    converted: list[str] = []
    monkeypatch.setattr(sources, "_convert_to_parquet", lambda *args: converted.append(args[0]))
    path = tmp_path / "topics.csv"
    topics.to_csv(path, index=False)
    f = make_form(str(path))
    f.source.value = str(path)
    f.prompt.value = "Tell me a joke about {topic}."
    f.preview_button.click()
    assert f.problems == []
    assert "Tell me a joke about topic number 1." in f.preview_table.value
    assert "{topic}" in f.columns.value
    assert converted == []  # the columns shown come from the rows previewed


def test_try_on_samples_shows_answers(aws: LocalBedrock, topics: pd.DataFrame) -> None:
    f = make_form(topics)
    f.prompt.value = "Tell me a joke about {topic}."
    f.invoke_button.click()
    assert f.preview_frame is not None
    assert f.preview_frame["response"].notna().all()
    assert "Answers of 3 sample row(s)" in f.preview_table.value
    assert aws.stats.invoke_calls == 3 and aws.stats.create_calls == 0


def test_problems_show_beside_the_form_not_as_tracebacks(
    aws: LocalBedrock, topics: pd.DataFrame
) -> None:
    f = make_form(topics)
    f.prompt.value = "A joke about {subject}."
    f.validate_button.click()
    assert len(f.problems) == 1
    assert "'subject'" in f.problems[0]
    f.prompt.value = "A joke about {topic}."
    f.temperature.value = "warm"
    f.preview_button.click()
    assert f.problems == ["Temperature must be a number (or empty for the model's default)."]
    f.temperature.value = ""
    f.source.value = "missing_frame"
    f.launch_button.click()
    assert "No variable 'missing_frame'" in f.problems[0]
    assert f.run is None and f.state == "idle"
    f.source.value = "df"
    f.model.value = "nobody.nothing-v1"
    f.validate_button.click()
    assert "Unknown model" in f.problems[0]
    assert aws.stats.create_calls == 0


def test_validate_shows_jobs_and_cost(aws: LocalBedrock, topics: pd.DataFrame) -> None:
    f = make_form(topics)
    f.prompt.value = "Tell me a joke about {topic}."
    f.records_per_job.value = 100
    f.validate_button.click()
    assert f.problems == []
    assert "Ready: 150 records in 1 job(s)" in f.messages.value
    assert "batch cost" in f.messages.value
    assert "<table" in f.plan_table.value
    assert aws.stats.create_calls == 0


def test_launch_shows_progress_and_binds_the_result(
    aws: LocalBedrock, topics: pd.DataFrame
) -> None:
    ns: dict[str, Any] = {}
    f = make_form(topics, ns)
    f.prompt.value = "Tell me a joke about {topic}."
    f.system.value = "You are a comedian."
    f.max_tokens.value = 100
    f.temperature.value = "0.5"
    f.records_per_job.value = 100
    f.out.value = "jokes"
    f.launch_button.click()
    assert f.problems == []
    assert isinstance(f.run, BatchRun)
    assert ns["jokes_run"] is f.run
    assert f.run.config.system_prompt == "You are a comedian."
    assert (f.run.config.max_tokens, f.run.config.temperature) == (100, 0.5)
    assert f.progress is not None and f.progress_box.children == (f.progress.widget,)
    result = f.wait(30)
    assert result is not None and len(result) == 150
    assert ns["jokes"] is result
    assert f.state == "done"
    assert "bound to <code>jokes</code>" in f.result_table.value
    assert "<table" in f.result_table.value
    assert "150 answered" in f.messages.value
    assert not f.launch_button.disabled and f.stop_button.disabled
    assert "Completed" in f.progress.jobs.value
    assert "Timeline" in f.progress.timeline.value
    assert f.progress.bar.n == 150


def test_launch_of_a_large_dataset_shows_its_row_problems_as_the_form_does(
    aws: LocalBedrock, topics: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over ``ROWS_CHECKED_IN_THE_CELL`` rows, Launch starts at once and the rows are
    checked in the background: their problems end the run and show as the list of
    problems a foreground check shows, and nothing is submitted."""
    monkeypatch.setattr(launching, "ROWS_CHECKED_IN_THE_CELL", 100)
    frame = topics.copy()
    frame.loc[[30, 120], "topic"] = ""
    f = make_form(frame)
    f.prompt.value = "Tell me a joke about {topic}."
    f.launch_button.click()
    assert f.problems == [] and isinstance(f.run, BatchRun)
    assert f.wait(30) is None
    assert f.state == "failed"
    assert len(f.problems) == 1, f.problems
    assert "'topic' is empty or null in 2 row(s): 30, 120" in f.problems[0]
    assert aws.stats.create_calls == 0


def test_stop_keeps_what_finished(aws: LocalBedrock, topics: pd.DataFrame) -> None:
    aws.timings.records_per_second = 20.0  # slow enough to stop mid-way
    try:
        f = make_form(topics)
        f.prompt.value = "Tell me a joke about {topic}."
        f.launch_button.click()
        assert not f.stop_button.disabled
        f.launch_button.click()  # a second launch while running is refused
        assert "still running" in f.problems[0]
        f.stop_button.click()
        result = f.wait(30)
    finally:
        aws.timings.records_per_second = 5000.0
    assert result is not None and len(result) == 150
    assert f.state == "stopped"
    assert result["error"].notna().any()


def test_embedding_form(aws: LocalBedrock, texts: pd.DataFrame) -> None:
    f = make_form(texts, model=TITAN)
    f.launch_button.click()
    result = f.wait(30)
    assert f.problems == []
    assert result is not None and len(result["embedding"].iloc[0]) == 1024


def test_text_progress_prints_bars_and_a_timeline(aws: LocalBedrock, topics: pd.DataFrame) -> None:
    run = BatchRun(topics, HAIKU, "Joke about {topic}", max_records_per_job=100, **FAST)
    out = io.StringIO()
    progress = RunProgress(run, widgets=False, file=out)
    frame = run.start().wait(30)
    progress.show_result(frame, "jokes")
    text = out.getvalue()
    assert "150/150" in text
    assert "timeline" in text and "Completed" in text
    assert "Result (150 rows x" in text and "bound to jokes" in text
    assert timeline_text(run.status()).count("█") > 0


def test_resume_button_reattaches_to_a_stopped_run(aws: LocalBedrock, topics: pd.DataFrame) -> None:
    aws.timings.records_per_second = 20.0
    try:
        f = make_form(topics, out="jokes")
        f.prompt.value = "Tell me a joke about {topic}."
        f.launch_button.click()
        f.stop_button.click()
        assert f.wait(30) is not None and f.state == "stopped"
    finally:
        aws.timings.records_per_second = 5000.0
    stopped = f.run
    assert stopped is not None

    f.resume_button.click()  # no run id given
    assert "give the id of the run" in f.problems[0]

    again = make_form(topics, ns=f.namespace, out="jokes")
    again.resume_id.value = stopped.run_id
    again.resume_button.click()
    result = again.wait(30)
    assert again.problems == [] and again.state == "done"
    assert result is not None and result["error"].isna().all()
    assert again.namespace["jokes"] is result
    assert len({j.name for j in again.run.status().jobs}) == aws.stats.jobs_created
