"""Validation: every problem named in one message, before anything is staged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.stub import Stubber

from bedrock_batch_nb import BatchInputError, BatchRun, UnknownModelError, sources
from bedrock_batch_nb.config import RunConfig
from bedrock_batch_nb.validation import model_problem

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"


def topics(n: int = 150) -> pd.DataFrame:
    return pd.DataFrame(
        {"topic": [f"topic {i}" for i in range(n)], "input_text": [f"text {i}" for i in range(n)]}
    )


def problems_of(run: BatchRun) -> str:
    with pytest.raises(BatchInputError) as info:
        run.validate()
    return str(info.value)


def test_valid_run_plans_its_jobs() -> None:
    plan = BatchRun(topics(250), CLAUDE, "Joke about {topic}", max_records_per_job=100).validate()
    assert (plan.records, plan.jobs) == (250, 2)
    frame = BatchRun(topics(250), CLAUDE, "Joke about {topic}", max_records_per_job=100).plan()
    assert frame["records"].tolist() == [100, 150]  # a 50-record tail is merged
    assert frame["first_row"].tolist() == [0, 100]
    assert (frame["input_bytes"] > 0).all()


def test_unknown_model_is_named() -> None:
    with pytest.raises(UnknownModelError, match=r"acme\.rocket-1"):
        BatchRun(topics(), "acme.rocket-1", "Joke about {topic}").validate()


def test_missing_columns_name_the_ones_that_exist() -> None:
    msg = problems_of(BatchRun(topics(), CLAUDE, "Joke about {topik} and {mood}"))
    assert "'topik', 'mood'" in msg
    assert "Columns available: 'topic', 'input_text'" in msg


def test_text_model_without_prompt() -> None:
    assert "is a text model: give a prompt template" in problems_of(BatchRun(topics(), CLAUDE))


def test_empty_and_null_values_say_how_many_and_which() -> None:
    df = topics()
    df.loc[3, "topic"] = None
    df.loc[7, "topic"] = "  "
    msg = problems_of(BatchRun(df, CLAUDE, "Joke about {topic}"))
    assert "Column 'topic' is empty or null in 2 row(s): 3, 7" in msg


def test_unused_columns_may_hold_nulls() -> None:
    df = topics()
    df["notes"] = None
    assert BatchRun(df, CLAUDE, "Joke about {topic}").validate().records == 150


def test_embedding_column_missing_or_not_text() -> None:
    df = topics().drop(columns="input_text")
    msg = problems_of(BatchRun(df, TITAN))
    assert "embed the column 'input_text'" in msg and "'topic'" in msg
    df["input_text"] = range(150)
    assert "must hold text; 150 row(s)" in problems_of(BatchRun(df, TITAN))
    assert BatchRun(df, TITAN, input_text_column="topic").validate().records == 150


def test_too_few_rows_suggests_on_demand() -> None:
    msg = problems_of(BatchRun(topics(40), CLAUDE, "Joke about {topic}"))
    assert "Only 40 row(s)" in msg and "at least 100 records" in msg
    assert "preview(n=40, invoke=True)" in msg
    empty = problems_of(BatchRun(topics(40).iloc[:0], CLAUDE, "Joke about {topic}"))
    assert "The data has no rows." in empty and "preview" not in empty


def test_result_column_clash_and_duplicate_index() -> None:
    df = topics()
    df["response"] = "x"
    df.index = [0, 0, *range(2, 150)]
    msg = problems_of(BatchRun(df, CLAUDE, "Joke about {topic}"))
    assert "'response'" in msg and "rename them first" in msg
    assert "duplicate labels (0, 0)" in msg


@pytest.mark.parametrize("template", ["Joke about {topic}", "Joke about {n}"])
def test_duplicate_column_names_are_one_clear_problem(template: str) -> None:
    """Whether or not the prompt uses the repeated name (``pd.concat(axis=1)`` makes them)."""
    df = topics()
    df = pd.concat([df, df.index.to_series(name="n"), df.index.to_series(name="n")], axis=1)
    run = BatchRun(df, CLAUDE, template)
    assert "more than one column named 'n'" in problems_of(run)
    with pytest.raises(BatchInputError, match="more than one column named 'n'"):
        run.preview(2)


def test_a_preview_of_a_negative_number_of_rows_is_refused() -> None:
    """(``head(-1)`` would have shown every row but the last.)"""
    with pytest.raises(BatchInputError, match=r"preview\(n=-1\)"):
        BatchRun(topics(), CLAUDE, "Joke about {topic}").preview(-1)


def test_all_problems_reported_together() -> None:
    df = topics(40)
    df.loc[0, "topic"] = None
    with pytest.raises(BatchInputError) as err:
        BatchRun(df, CLAUDE, "{topic} {nope}").validate()
    assert len(err.value.problems) == 3


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"job_name_prefix": "bad name!"}, "job_name_prefix 'bad name!'"),
        ({"job_name_prefix": "x" * 60}, "job_name_prefix"),
        ({"max_records_per_job": 50}, "max_records_per_job=50 must be between"),
        ({"max_records_per_job": 60_000}, "max_records_per_job=60000 must be between"),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs must be at least 1"),
        ({"timeout_hours": 6}, "timeout_hours must be between 24 and 168"),
        ({"invocation_type": "Stream"}, "invocation_type must be"),
        ({"bucket": "Not_A_Bucket"}, "not a valid S3 bucket name"),
        ({"role_arn": "my-role"}, "is not an IAM role ARN"),
        ({"prompt_id": "joke_about_topic"}, "either prompt=... or prompt_id=..., not both"),
        ({"max_frame_rows": -1}, "max_frame_rows must be 0 or more"),
    ],
)
def test_conflicting_or_out_of_range_options(options: dict[str, object], fragment: str) -> None:
    assert fragment in problems_of(BatchRun(topics(), CLAUDE, "Joke about {topic}", **options))


def test_results_are_one_dataframe_up_to_a_size_that_depends_on_the_model_kind() -> None:
    """Unset, max_frame_rows is 1,000,000 rows of text (fewer when their prompts hold over
    2^30 characters), and for embeddings 1 GiB of float64 numbers (131,072 rows of 1,024;
    524,288 of 256); set, it is what it says."""
    assert RunConfig(model_id=CLAUDE).frame_rows(embedding=False) == 1_000_000
    assert RunConfig(model_id=TITAN).frame_rows(embedding=True) == 131_072
    assert RunConfig(model_id=TITAN, dimensions=256).frame_rows(embedding=True) == 524_288
    assert RunConfig(model_id=TITAN, max_frame_rows=5).frame_rows(embedding=True) == 5
    assert RunConfig(model_id=CLAUDE, max_frame_rows=0).frame_rows(embedding=False) == 0
    # texts: fewer rows when their prompts hold over FRAME_TEXT_CHARS (1 GiB) characters
    text = RunConfig(model_id=CLAUDE)
    assert text.frame_rows(False, rows=2_000_000, prompt_chars=4 << 30) == 500_000
    assert text.frame_rows(False, rows=800_000, prompt_chars=1 << 30) == 1_000_000
    assert text.frame_rows(False, rows=3, prompt_chars=30 << 30) == 1  # never 0
    chosen = RunConfig(model_id=CLAUDE, max_frame_rows=7)
    assert chosen.frame_rows(False, rows=10, prompt_chars=1 << 40) == 7


def test_unknown_option_is_a_clear_error() -> None:
    with pytest.raises(BatchInputError) as info:
        BatchRun(topics(), CLAUDE, "Joke about {topic}", max_record_per_job=100, colour="red")
    assert info.value.problems[0] == (
        "Unknown option 'max_record_per_job': did you mean 'max_records_per_job'?"
    )
    assert info.value.problems[1].startswith("Unknown option 'colour'. Options: model_id, ")


def test_unsafe_template_fields_are_rejected() -> None:
    for bad in ("{topic.__class__}", "{0}", "{topic[0]}"):
        with pytest.raises(BatchInputError):
            BatchRun(topics(), CLAUDE, f"Joke about {bad}").validate()


def test_rendered_prompt_over_the_model_limit() -> None:
    df = topics(120)
    df.loc[5, "topic"] = "x" * 60_000
    msg = problems_of(BatchRun(df, "amazon.titan-embed-text-v2:0", "{topic}"))
    assert "1 rendered prompt(s) are longer than 50,000 characters" in msg and "5" in msg


def test_prompt_id_brings_its_template() -> None:
    df = topics()
    run = BatchRun(df, CLAUDE, prompt_id="joke_about_topic")
    assert run.template is not None and run.template.fields == ("topic",)
    assert run.validate().records == 150


def test_bucket_and_role_error_names_both_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BEDROCK_BATCH_BUCKET", raising=False)
    monkeypatch.delenv("BEDROCK_BATCH_ROLE_ARN", raising=False)
    config = RunConfig(model_id=CLAUDE)
    with pytest.raises(BatchInputError, match="BEDROCK_BATCH_BUCKET"):
        config.resolved_bucket()
    with pytest.raises(BatchInputError, match="BEDROCK_BATCH_ROLE_ARN"):
        config.resolved_role_arn()
    monkeypatch.setenv("BEDROCK_BATCH_BUCKET", "from-env")
    assert config.resolved_bucket() == "from-env"
    assert RunConfig(model_id=CLAUDE, bucket="from-arg").resolved_bucket() == "from-arg"


def test_template_columns_must_hold_text_or_numbers() -> None:
    df = topics()
    df["year"] = 2024  # numbers render as text: fine
    df["tags"] = [["a", "b"]] * 150
    df.loc[4, "tags"] = "fine"
    msg = problems_of(BatchRun(df, CLAUDE, "Joke about {topic} in {year} with {tags}"))
    assert "Column 'tags' holds values that are not text or numbers (list) in 149 row(s)" in msg
    assert "year" not in msg


def test_value_checks_add_up_over_batches() -> None:
    from bedrock_batch_nb.validation import ValueChecks

    checks = ValueChecks(["topic"], templated=True)
    for start in range(0, 1000, 100):  # ten batches, three empty rows in each
        topics = [f"t{i}" for i in range(start, start + 100)]
        topics[0], topics[50], topics[99] = None, " ", ["a list"]  # type: ignore[call-overload]
        checks.add(pd.DataFrame({"topic": topics}, index=range(start, start + 100)))
    problems = checks.problems()
    assert len(problems) == 2
    assert "(list) in 10 row(s): 99, 199, 299, 399, 499, and 5 more" in problems[0]
    assert "empty or null in 20 row(s): 0, 50, 100, 150, 200, and 15 more" in problems[1]


def test_blank_text_beside_a_number_column_is_found() -> None:
    """A template over an object column of str and a number column: the rows stay in
    pandas, and the blank texts are still found (by Python, without encoding them)."""
    topics = [f"t{i}" for i in range(200)]
    topics[5], topics[60], topics[199] = "", " \t ", "\n"
    df = pd.DataFrame({"topic": pd.Series(topics, dtype=object), "n": range(200)})
    df["score"] = np.where(np.arange(200) == 42, np.nan, 0.5)
    msg = problems_of(BatchRun(df, CLAUDE, "Joke {n} about {topic} ({score})"))
    assert "Column 'topic' is empty or null in 3 row(s): 5, 60, 199" in msg
    assert "Column 'score' is empty or null in 1 row(s): 42" in msg
    assert "'n'" not in msg
    df.loc[5, "topic"], df.loc[60, "topic"], df.loc[199, "topic"] = "a", "b", "c"
    df.loc[42, "score"] = 0.0
    assert BatchRun(df, CLAUDE, "Joke {n} about {topic} ({score})").validate().records == 200


@pytest.mark.parametrize("model", ["text", "embedding"])
def test_blank_str_objects_are_found_for_either_kind_of_model(model: str) -> None:
    """Text as pandas before 3.0 holds it (str objects, every column of them)."""
    texts = [f"t{i}" for i in range(300)]
    texts[0], texts[150], texts[299] = "", "\u00a0\u2003", " \r\n"  # (Unicode spaces too)
    df = pd.DataFrame({"topic": pd.Series(texts, dtype=object)})
    run = (
        BatchRun(df, CLAUDE, "Joke about {topic}")
        if model == "text"
        else BatchRun(df, TITAN, input_text_column="topic")
    )
    assert "Column 'topic' is empty or null in 3 row(s): 0, 150, 299" in problems_of(run)


def test_a_parquet_file_is_checked_with_the_same_messages(tmp_path: Path) -> None:
    topics = [f"t{i}" for i in range(300)]
    topics[3], topics[7], topics[250] = None, "", " \t"  # type: ignore[call-overload]
    frame = pd.DataFrame(
        {"topic": topics, "tags": [["a"]] * 300, "n": range(300)},
        index=pd.Index([f"r{i}" for i in range(300)], name="key"),
    )
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path)
    with pytest.raises(BatchInputError) as err:
        BatchRun(str(path), CLAUDE, "{topic} {tags}").validate()
    problems = err.value.problems
    assert any("'tags' holds values that are not text or numbers (list)" in p for p in problems)
    assert any("'topic' is empty or null in 3 row(s): 'r3', 'r7', 'r250'" in p for p in problems), (
        problems
    )
    with pytest.raises(BatchInputError, match="Column 'n' must hold text; 300 row"):
        BatchRun(str(path), TITAN, input_text_column="n").validate()
    ok = BatchRun(str(path), CLAUDE, "About {n}: {topic}", max_records_total=3)
    with pytest.raises(BatchInputError, match="Only 3 row"):
        ok.validate()


def test_check_setup_finds_what_needs_no_rows_and_reads_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = topics(300)
    frame.loc[250, "topic"] = ""
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path)
    read: list[int] = []
    real_read_raw = sources.ParquetSource.read_raw

    def counted(self: sources.ParquetSource, start: int, stop: int, columns: Any = None) -> Any:
        read.append(stop - start)
        return real_read_raw(self, start, stop, columns)

    monkeypatch.setattr(sources.ParquetSource, "read_raw", counted)
    problems = [
        (CLAUDE, "Joke about {topik}", {}, "'topik'"),
        (CLAUDE, None, {}, "is a text model: give a prompt template"),
        (TITAN, None, {"input_text_column": "text"}, "embed the column 'text'"),
        (CLAUDE, "Joke about {topic}", {"temperature": 7.0}, "temperature"),
        (CLAUDE, "Joke about {topic}", {"max_records_per_job": 20}, "max_records_per_job=20"),
    ]
    for model, prompt, options, expected in problems:
        with pytest.raises(BatchInputError, match=expected):
            BatchRun(str(path), model, prompt, **options).check_setup()
    run = BatchRun(str(path), CLAUDE, "Joke about {topic}")
    run.check_setup()  # the empty topic in row 250 is not looked at
    assert read == []
    with pytest.raises(BatchInputError, match="250"):
        run.validate()
    assert sum(read) == 300


@pytest.mark.parametrize("dtype", [object, "string"])
def test_a_frame_of_text_checks_and_builds_as_its_parquet_file(
    tmp_path: Path, dtype: object
) -> None:
    # Python strings in object columns (pandas' default before 3.0) or a string dtype:
    # read as Arrow once per batch, they must give what the same rows in a file give.
    df = pd.DataFrame(
        {
            "topic": [f'topic "{i}"\nä\t✓' for i in range(150)],
            "mood": ["calm", "  ", None] * 50,
        },
        index=pd.Index([f"id{i}" for i in range(150)], name="key"),
    ).astype(dtype)
    path = tmp_path / "rows.parquet"
    df.to_parquet(path)
    prompt = "Joke about {topic}, {mood}"
    from_frame = problems_of(BatchRun(df, CLAUDE, prompt))
    assert "Column 'mood' is empty or null in 100 row(s): 'id1', 'id2', 'id4'" in from_frame
    assert from_frame == problems_of(BatchRun(str(path), CLAUDE, prompt))

    df["mood"] = "calm"
    df.to_parquet(path)
    runs = [BatchRun(data, CLAUDE, prompt) for data in (df, str(path))]
    for run in runs:
        run.validate()
    bodies = [run.record_body(range(150)) for run in runs]
    assert bodies[0] == bodies[1]
    assert b'topic \\"7\\"\\n\xc3\xa4\\t\xe2\x9c\x93, calm' in bodies[0]


def test_a_frame_column_of_numbers_or_mixed_values_reads_as_python_prints_them() -> None:
    df = pd.DataFrame({"n": [1.5, 2.0, 1e20] * 50, "mixed": ["x", 2, None] * 50}, dtype=object)
    df["mixed"] = df["mixed"].fillna("none")
    run = BatchRun(df, CLAUDE, "{n} and {mixed}")
    run.validate()
    body = run.record_body(range(3)).decode()
    assert "1.5 and x" in body and "2.0 and 2" in body and "1e+20 and none" in body


def test_a_shuffled_dataset_builds_the_records_of_its_own_order() -> None:
    import datasets

    ds = datasets.Dataset.from_pandas(topics(300)).shuffle(seed=5)
    in_order = pd.DataFrame({"topic": ds["topic"], "input_text": ds["input_text"]})
    runs = [BatchRun(data, CLAUDE, "Joke about {topic}") for data in (ds, in_order)]
    assert runs[0].preview(2)["prompt"].tolist() == [f"Joke about {t}" for t in ds["topic"][:2]]
    for run in runs:
        run.validate()
    assert runs[0].record_body(range(300)) == runs[1].record_body(range(300))


@pytest.mark.parametrize("source", ["frame", "parquet"])
def test_planned_input_bytes_cover_the_files_staging_builds(source: str, tmp_path: Path) -> None:
    """The plan sizes jobs from a sample's bytes per character (escapes, UTF-8); the files
    staging then builds must fit the plan, and so the input file limit."""
    pieces = ['say "hi"', "back\\slash", "line\nbreak", "tab\there", "café", "日本語", "🙂"]
    texts = [" ".join(pieces[j % len(pieces)] for j in range(1 + i % 40)) for i in range(600)]
    df = pd.DataFrame({"topic": texts})
    data: Any = df
    if source == "parquet":
        data = str(tmp_path / "rows.parquet")
        df.to_parquet(data)
    limit = 60_000
    run = BatchRun(data, CLAUDE, "Joke about {topic}", max_input_file_bytes=limit)
    plan = run.plan()
    assert len(plan) > 1  # cut by bytes, not by records
    for first, records, planned in zip(
        plan["first_row"], plan["records"], plan["input_bytes"], strict=True
    ):
        body = run.record_body(range(first, first + records))
        assert len(body) <= planned <= limit


def test_retried_records_are_planned_by_the_estimates_validation_made() -> None:
    """Failed records retried in new jobs are cut by the same estimate of their lines'
    bytes as the run's jobs were (validation keeps each job's total, not each record's):
    all of them retried make the same jobs, and any of them fit the input file limit."""
    pieces = ['say "hi"', "line\nbreak", "café", "日本語", "🙂"]
    texts = [" ".join(pieces[j % len(pieces)] for j in range(1 + i % 40)) for i in range(600)]
    limit = 60_000
    run = BatchRun(
        pd.DataFrame({"topic": texts}),
        CLAUDE,
        "Joke about {topic}",
        max_input_file_bytes=limit,
        min_records_per_job=10,
        bucket="a-bucket",
    )
    plan = run.plan()
    assert len(plan) > 2  # cut by bytes
    prepared = run._prepared
    assert prepared is not None
    every = run._retry_jobs(np.arange(600), 1, prepared)
    assert [len(job.rows()) for job in every] == plan["records"].tolist()
    odd = run._retry_jobs(np.arange(1, 600, 2), 1, prepared)
    assert sum(len(job.rows()) for job in odd) == 300
    for job in odd:
        assert len(run.record_body(job.rows())) <= limit


def test_a_streamed_datasets_declared_columns_are_checked_before_it_is_streamed() -> None:
    import datasets

    produced = 0

    def rows() -> Iterator[dict[str, str]]:
        nonlocal produced
        for i in range(300):
            produced += 1
            yield {"topic": f"topic {i}"}

    features = datasets.Features({"topic": datasets.Value("string")})
    streamed = datasets.IterableDataset.from_generator(rows, features=features)
    with pytest.raises(BatchInputError, match="'subject' that the data does not have"):
        BatchRun(streamed, CLAUDE, "Joke about {subject}").check_setup()
    BatchRun(streamed, CLAUDE, "Joke about {topic}").check_setup()
    assert produced == 0  # nothing was read for it
    undeclared = datasets.IterableDataset.from_generator(rows)
    BatchRun(undeclared, CLAUDE, "Joke about {subject}").check_setup()  # (checked with the rows)
    assert produced == 0


# ---- the model, asked of Bedrock (boto3's Stubber in place of the service) ----------------


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "bedrock", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_a_model_bedrock_cannot_be_asked_about_is_left_to_the_jobs(
    bedrock: tuple[Any, Stubber],
) -> None:
    client, stub = bedrock
    stub.add_client_error("get_foundation_model", "AccessDeniedException", http_status_code=403)
    assert model_problem(client, "anthropic.claude-3-haiku-20240307-v1:0") is None
    stub.add_client_error("get_inference_profile", "ThrottlingException", http_status_code=429)
    assert model_problem(client, "eu.anthropic.claude-3-haiku-20240307-v1:0") is None
    custom = "arn:aws:bedrock:eu-west-1:123456789012:custom-model/anthropic.x/abcdefghijkl"
    assert model_problem(client, custom) is None  # (no call: nothing stubbed for it)


def test_an_unknown_model_is_named_with_its_region_even_without_a_listing(
    bedrock: tuple[Any, Stubber],
) -> None:
    client, stub = bedrock
    stub.add_client_error(
        "get_foundation_model", "ValidationException", "The provided model identifier is invalid."
    )
    stub.add_client_error("list_foundation_models", "AccessDeniedException", http_status_code=403)
    message = model_problem(client, " anthropic.claude-9 ")
    assert message == (
        "Bedrock has no model 'anthropic.claude-9' in eu-west-1 (ValidationException: The "
        "provided model identifier is invalid.). ListFoundationModels and "
        "ListInferenceProfiles name the Region's models."
    )
