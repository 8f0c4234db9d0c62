"""Whole runs through real HTTP: boto3 → local Bedrock emulator, S3 → moto server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bedrock_batch_nb import BatchInputError, BatchRun, BatchRunError, run_batch
from bedrock_batch_nb import run as run_module
from bedrock_batch_nb import sources as sources_module
from bedrock_batch_nb.local import LocalBedrock
from bedrock_batch_nb.orchestrator import JobState
from bedrock_batch_nb.staging import RecordBuilder

pytestmark = pytest.mark.e2e

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
FAST = {"poll_interval": 0.05, "max_poll_interval": 0.2}


def topics(n: int) -> pd.DataFrame:
    """Rows with a non-default index, so that the join back is visible."""
    return pd.DataFrame(
        {"topic": [f"topic number {i}" for i in range(n)], "n": range(n)},
        index=pd.Index([f"row-{i}" for i in range(n)], name="key"),
    )


def answers_match_prompts(out: pd.DataFrame, df: pd.DataFrame, template: str) -> None:
    """Every input row once, in order, with its own answer (the emulator echoes the prompt).

    ``template`` is a ``str.format`` template over the ``topic`` column."""
    assert out.index.equals(df.index)
    pd.testing.assert_frame_equal(out[df.columns.tolist()], df)
    assert out["error"].isna().all(), out.loc[out["error"].notna(), "error"].head()
    for topic, response in zip(df["topic"], out["response"], strict=True):
        assert template.format(topic=topic) in response


def test_text_run_over_more_jobs_than_the_cap(aws: LocalBedrock) -> None:
    df = topics(450)
    template = "Tell me a joke about {topic} in less than 50 words."
    run = BatchRun(
        df,
        CLAUDE,
        template,
        job_name_prefix="jokes",
        max_records_per_job=100,
        max_concurrent_jobs=2,
        **FAST,
    )
    assert run.plan()["records"].tolist() == [100, 100, 100, 150]
    out = run.start().wait(timeout=120)

    answers_match_prompts(out, df, template)
    assert (out["input_tokens"] > 0).all() and (out["output_tokens"] > 0).all()
    status = run.status()
    assert status.done and status.succeeded == 450 and status.failed == 0
    assert [job.status for job in status.jobs] == ["Completed"] * 4
    assert aws.stats.jobs_created == 4
    assert aws.stats.max_active_jobs <= 2


def test_parquet_file_is_streamed_a_batch_at_a_time(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bedrock_batch_nb import sources

    monkeypatch.setattr(sources, "BATCH_ROWS", 64)  # many batches, none aligned with a job
    df = topics(430)
    path = tmp_path / "topics.parquet"
    df.to_parquet(path, row_group_size=100)
    template = "Tell me a joke about {topic}."
    run = BatchRun(str(path), CLAUDE, template, max_records_per_job=150, **FAST)
    assert run.plan()["records"].tolist() == [150, 150, 130]
    reads: list[tuple[int, int]] = []
    read = sources.ParquetSource.read

    def spy(self: sources.ParquetSource, start: int, stop: int, columns: object = None) -> object:
        reads.append((start, stop))
        return read(self, start, stop, columns)  # type: ignore[arg-type]

    monkeypatch.setattr(sources.ParquetSource, "read", spy)
    out = run.start().wait(timeout=120)
    answers_match_prompts(out, df, template)
    assert all(stop - start <= 150 for start, stop in reads[:-1])  # never the whole file
    assert reads[-1] == (0, 430)  # the final join, and only it, reads every row


@pytest.mark.parametrize("kind", ["csv", "jsonl", "hf", "hf-streamed"])
def test_other_sources_run_a_batch_at_a_time_too(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import datasets

    from bedrock_batch_nb import sources

    monkeypatch.setattr(sources, "BATCH_ROWS", 64)
    monkeypatch.setattr(sources, "STREAM_MIN_BYTES", 0)  # convert even a small file
    monkeypatch.setattr(sources, "STREAM_BLOCK_BYTES", 2048)
    df = topics(300).reset_index(drop=True)
    data: object
    if kind == "csv":
        data = str(tmp_path / "topics.csv")
        df.to_csv(data, index=False)
    elif kind == "jsonl":
        data = str(tmp_path / "topics.jsonl")
        df.to_json(data, orient="records", lines=True)
    elif kind == "hf":
        data = datasets.Dataset.from_pandas(df)
    else:  # load_dataset(..., streaming=True) over local Parquet files, in three shards
        for i, start in enumerate(range(0, len(df), 100)):
            df.iloc[start : start + 100].to_parquet(tmp_path / f"part-{i}.parquet", index=False)
        files = sorted(str(f) for f in tmp_path.glob("part-*.parquet"))
        data = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    template = "Tell me a joke about {topic}."
    monkeypatch.setattr(run_module._Progress, "EVERY_S", 0.0)  # (a note every batch)
    run = BatchRun(data, CLAUDE, template, max_records_per_job=120, **FAST)
    notes: list[str | None] = []
    run.add_listener(lambda status: notes.append(status.note))
    out = run.start().wait(timeout=120)
    # while it prepares, the status says what it is reading and how far its checks are
    checking = [n for n in dict.fromkeys(notes) if n and n.startswith(("Read", "Checked"))]
    converting = [n for n in notes if n and n.startswith("Converting")]
    if kind in ("csv", "jsonl"):  # (in blocks of 2 kB: a note a block, on to the file's size)
        size = os.path.getsize(str(data)) / 1e3
        done = [float(n.split(": ")[1].split(" of ")[0]) for n in converting]
        assert len(done) >= 3 and done == sorted(done) and done[-1] == round(size, 1)
        assert converting[-1] == f"Converting {data} to Parquet: {size:.1f} of {size:.1f} kB."
    else:
        assert not converting
    read = {"csv": data, "jsonl": data, "hf-streamed": "the streamed Hugging Face dataset"}
    reading = [f"Reading the rows of {read[kind]}."] if kind in read else []
    batches = (64, 128, 192, 256, 300)
    if kind == "hf-streamed":  # (the one whose rows are counted as they are read)
        reading += [f"Read {n} rows of the streamed dataset so far." for n in batches]
    assert checking == [*reading, *(f"Checked {n} of 300 rows." for n in batches)]
    assert out["error"].isna().all()
    assert list(out["topic"]) == list(df["topic"]) and list(out["n"]) == list(df["n"])
    for topic, response in zip(df["topic"], out["response"], strict=True):
        assert template.format(topic=topic) in response


def test_results_are_written_to_s3_as_parquet(aws: LocalBedrock) -> None:
    df = topics(120)
    run = BatchRun(df, CLAUDE, "Say {topic}", **FAST)
    out = run.start().wait(timeout=60)
    s3 = boto3.client("s3")
    saved = s3.get_object(Bucket=aws.bucket, Key=run.layout.results_key)
    body = saved["Body"].read()
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(body)), out, check_dtype=False)
    assert saved["ContentType"] == "application/vnd.apache.parquet"
    meta = pq.ParquetFile(io.BytesIO(body)).metadata  # zstd: a third smaller than snappy
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=aws.bucket)["Contents"]]
    assert all(k.startswith(f"bedrock-batch/{run.run_id}/") for k in keys)


def carries_utf8_copy(text: str) -> bool:
    """Whether CPython keeps a UTF-8 copy inside ``text`` (``sys.getsizeof`` counts it; a
    ``str`` just decoded has none)."""
    return sys.getsizeof(text) != sys.getsizeof(text.encode().decode())


def test_a_run_leaves_the_callers_texts_as_they_were(aws: LocalBedrock, tmp_path: Path) -> None:
    # Text as pandas before 3.0 holds it: str objects, here not ASCII. Reading them into
    # Arrow must not leave a UTF-8 copy inside each one (the caller's frame would grow by
    # its text's size, and so would the answers handed back).
    df = pd.DataFrame(
        {
            "topic": pd.Series([f"thème n° {i} — «{i}»" for i in range(150)], dtype=object),
            "note": pd.Series([f"remarque {i} ✓" for i in range(150)], dtype=object),
        }
    )
    assert not any(carries_utf8_copy(t) for t in df["topic"])
    run = BatchRun(df, CLAUDE, "Résume {topic}", **FAST)
    out = run.start().wait(timeout=60)
    run.to_parquet(tmp_path / "out.parquet")

    assert out["error"].isna().all()
    assert not [t for t in [*df["topic"], *df["note"]] if carries_utf8_copy(t)]
    assert not [t for t in out["response"] if carries_utf8_copy(t)]
    # (pandas 3 reads text back as its "str" dtype)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), out, check_dtype=False)


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every S3 object counted as big (a preview reads only its start), and the URIs of
    the objects downloaded whole."""
    from bedrock_batch_nb import sources

    monkeypatch.setattr(sources, "STREAM_MIN_BYTES", 0)
    seen: list[str] = []
    download = sources._download

    def counted(uri: str, *rest: Any) -> Any:
        seen.append(uri)
        return download(uri, *rest)

    monkeypatch.setattr(sources, "_download", counted)
    return seen


@pytest.mark.parametrize("own_index", [True, False])
def test_a_big_parquet_on_s3_is_previewed_from_its_first_row_group(
    aws: LocalBedrock, downloads: list[str], own_index: bool
) -> None:
    df = pd.DataFrame(
        {"topic": [f"topic {i}" for i in range(250)], "n": range(250)},
        index=pd.Index([f"key{i}" for i in range(250)], name="key"),
    )
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=own_index, row_group_size=100)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=aws.bucket, Key="inputs/t.parquet", Body=buffer.getvalue())
    uri = f"s3://{aws.bucket}/inputs/t.parquet"

    run = BatchRun(uri, CLAUDE, "Joke about {topic}", max_records_per_job=100, **FAST)
    preview = run.preview(3)
    assert downloads == []  # ranged reads: the footer and the first row group
    whole = run.source.frame()  # the object downloaded: the labels agree
    assert downloads == [uri]
    assert preview.index.tolist() == whole.index[:3].tolist()
    assert preview["prompt"].tolist() == [f"Joke about topic {i}" for i in range(3)]
    assert whole.index[0] == ("key0" if own_index else 0)


def test_embedding_run_from_parquet_on_s3(aws: LocalBedrock) -> None:
    texts = [f"sentence {i % 150}" for i in range(330)]  # repeats: same text, same vector
    df = pd.DataFrame({"id": range(330), "input_text": texts})
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    boto3.client("s3").put_object(Bucket=aws.bucket, Key="inputs/t.parquet", Body=buffer.getvalue())

    run = BatchRun(
        f"s3://{aws.bucket}/inputs/t.parquet",
        TITAN,
        job_name_prefix="emb",
        dimensions=256,
        max_records_per_job=100,
        max_concurrent_jobs=1,
        **FAST,
    )
    out = run.start().wait(timeout=120)
    assert out["id"].tolist() == list(range(330))
    assert out["error"].isna().all()
    vectors = np.array(out["embedding"].tolist())
    assert vectors.shape == (330, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[150])
    assert not np.array_equal(vectors[0], vectors[1])
    assert aws.stats.max_active_jobs == 1 and aws.stats.jobs_created == 3
    # each vector is a float64 array, as the results' Parquet reads back
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in out["embedding"])
    saved = boto3.client("s3").get_object(Bucket=aws.bucket, Key=run.layout.results_key)
    back = pd.read_parquet(io.BytesIO(saved["Body"].read()))
    np.testing.assert_array_equal(np.array(back["embedding"].tolist()), vectors)


def test_a_big_csv_on_s3_is_previewed_from_its_first_bytes(
    aws: LocalBedrock, downloads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    df = pd.DataFrame({"topic": [f"topic {i}\nwith a second line" for i in range(150)]})
    s3 = boto3.client("s3")
    s3.put_object(Bucket=aws.bucket, Key="inputs/t.csv", Body=df.to_csv(index=False).encode())
    uri = f"s3://{aws.bucket}/inputs/t.csv"

    run = BatchRun(uri, CLAUDE, "Joke about {topic}", max_records_per_job=100, **FAST)
    preview = run.preview(3)
    assert preview["prompt"].tolist() == [f"Joke about {t}" for t in df["topic"][:3]]
    assert downloads == []  # a ranged read of its start, not the whole object
    from bedrock_batch_nb import sources

    download, threads = sources._download, []

    def where(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return download(*args)

    monkeypatch.setattr(sources, "_download", where)
    monkeypatch.setattr(run_module._Progress, "EVERY_S", 0.0)
    notes: list[str | None] = []
    run.add_listener(lambda status: notes.append(status.note))
    out = run.start().wait(timeout=120)
    size = len(df.to_csv(index=False).encode()) / 1e3  # the status says how far each step is
    assert f"Downloading {uri}: {size:.1f} of {size:.1f} kB." in notes
    assert f"Converting {uri} to Parquet: {size:.1f} of {size:.1f} kB." in notes
    assert out["topic"].tolist() == df["topic"].tolist()
    assert out["response"].notna().all()
    assert downloads == [uri]
    assert threading.main_thread() not in threads  # start() returned at once: not on the caller

    with pytest.raises(BatchInputError, match=r"Cannot read s3://.*/inputs/missing\.csv"):
        BatchRun(f"s3://{aws.bucket}/inputs/missing.csv", CLAUDE, "{topic}").preview(3)


def test_a_finished_run_deletes_its_copies_of_the_rows(
    aws: LocalBedrock, downloads: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook keeps its runs (the magic's list, the progress display): the download of
    an S3 file and its Parquet conversion must not stay on disk as long as the kernel."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    df = pd.DataFrame({"topic": [f"topic {i}" for i in range(150)]})
    s3 = boto3.client("s3")
    s3.put_object(Bucket=aws.bucket, Key="inputs/t.csv", Body=df.to_csv(index=False).encode())
    uri = f"s3://{aws.bucket}/inputs/t.csv"
    copies: list[set[str]] = []
    run = BatchRun(uri, CLAUDE, "Joke about {topic}", max_records_per_job=100, **FAST)
    run.add_listener(lambda s: copies.append({p.name for p in tmp_path.glob("bedrock-batch-*")}))
    out = run.start().wait(timeout=120)
    assert out["response"].notna().all()
    assert any(any(n.endswith(".parquet") for n in seen) for seen in copies)  # converted
    assert list(tmp_path.glob("bedrock-batch-*")) == []
    assert run.status().total_records == 150 and run.status().succeeded == 150
    assert downloads == [uri]

    assert run.rows["topic"].tolist() == df["topic"].tolist()  # read again when asked
    assert downloads == [uri, uri]


@pytest.mark.parametrize(
    "model_id",
    [
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "amazon.nova-lite-v1:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "mistral.mistral-7b-instruct-v0:2",
    ],
)
def test_each_text_family_round_trips(aws: LocalBedrock, model_id: str) -> None:
    df = topics(100)
    template = 'Answer about "{topic}" with {{"json": [1]}}, a \\ and ünïcode\n.'
    out = BatchRun(df, model_id, template, system_prompt="Be brief.", **FAST).wait(timeout=60)
    answers_match_prompts(out, df, template)


def test_converse_invocation_type(aws: LocalBedrock) -> None:
    df = topics(100)
    template = "Summarise {topic}."
    out = BatchRun(df, "amazon.nova-micro-v1:0", template, invocation_type="Converse", **FAST)
    answers_match_prompts(out.wait(timeout=60), df, template)


def test_per_record_errors_surface_without_losing_rows(aws: LocalBedrock) -> None:
    df = topics(300)
    df.loc[["row-5", "row-250"], "topic"] = "BROKEN"
    aws.faults.fail_text_containing = "BROKEN"
    out = BatchRun(df, CLAUDE, "Joke about {topic}", max_records_per_job=100, **FAST).wait(60)
    assert out.index.equals(df.index)
    failed = out[out["error"].notna()]
    assert failed.index.tolist() == ["row-5", "row-250"]
    assert failed["response"].isna().all()
    ok = out.drop(index=failed.index)
    assert ok["response"].notna().all() and len(ok) == 298


def test_rows_missing_from_the_output_get_an_error_that_says_so(aws: LocalBedrock) -> None:
    aws.faults.drop_output_lines = 0.05
    df = topics(400)
    out = BatchRun(df, CLAUDE, "Joke about {topic}", max_records_per_job=200, **FAST).wait(60)
    assert out.index.equals(df.index)
    missing = out["error"].notna()
    assert 0 < missing.sum() < 60
    assert out.loc[missing, "error"].str.startswith("No output line for this record").all()
    assert out.loc[~missing, "response"].notna().all()


def test_invalid_input_stages_and_submits_nothing(aws: LocalBedrock) -> None:
    run = BatchRun(topics(300), CLAUDE, "Joke about {subject}", **FAST)
    with pytest.raises(BatchInputError, match="'subject'"):
        run.validate()
    with pytest.raises(BatchInputError, match="'subject'"):
        run.start().wait(30)  # rows are checked in the background: wait() tells
    assert run.status().phase == "failed" and run.done
    assert aws.stats.create_calls == 0
    listing = boto3.client("s3").list_objects_v2(
        Bucket=aws.bucket, Prefix=f"bedrock-batch/{run.run_id}"
    )
    assert "Contents" not in listing


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:1", CLAUDE),
        ("us.anthropic.claude-3-haiku-2024037-v1:0", f"us.{CLAUDE}"),
        ("amazon.titan-embed-text-v2:1", TITAN),
    ],
)
def test_a_misspelt_model_id_fails_before_a_row_is_read(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch, given: str, meant: str
) -> None:
    read = []
    monkeypatch.setattr(BatchRun, "_prepare", lambda run: read.append(run))
    template = "Joke about {topic}" if "anthropic" in given else None
    options = {} if template else {"input_text_column": "topic"}
    run = BatchRun(topics(300), given, template, **options, **FAST)
    with pytest.raises(BatchInputError) as caught:
        run.start().wait(30)
    message = str(caught.value)
    assert (
        f"Bedrock has no {'inference profile' if given.startswith('us.') else 'model'} " in message
    )
    assert f"{given!r} in us-east-1" in message and f"Did you mean {meant!r}" in message
    assert run.status().phase == "failed" and not read
    assert aws.stats.create_calls == 0
    listing = boto3.client("s3").list_objects_v2(
        Bucket=aws.bucket, Prefix=f"bedrock-batch/{run.run_id}"
    )
    assert "Contents" not in listing


def test_preview_with_invoke_calls_the_runtime_only(aws: LocalBedrock) -> None:
    df = topics(10)  # fewer rows than a job needs: previews still work
    run = BatchRun(df, CLAUDE, "Joke about {topic}", system_prompt="Be kind.")
    shown = run.preview(n=3)
    assert shown["prompt"].tolist() == [f"Joke about topic number {i}" for i in range(3)]
    body = json.loads(shown["model_input"].iloc[0])
    assert body["system"] == "Be kind." and body["anthropic_version"] == "bedrock-2023-05-31"
    answered = run.preview(n=3, invoke=True)
    assert answered["error"].isna().all()
    for prompt, response in zip(answered["prompt"], answered["response"], strict=True):
        assert prompt in response
    assert aws.stats.invoke_calls == 3 and aws.stats.create_calls == 0


def test_await_works_inside_a_running_loop(aws: LocalBedrock) -> None:
    df = topics(100)
    run = BatchRun(df, CLAUDE, "Joke about {topic}", **FAST)

    async def main() -> pd.DataFrame:
        run.start()
        ticks = 0
        while not run.done:  # the loop stays free while the run works
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks > 1
        return await run

    out = asyncio.run(main())
    answers_match_prompts(out, df, "Joke about {topic}")


def test_stop_keeps_every_row(aws: LocalBedrock) -> None:
    aws.timings.records_per_second = 50  # a 100-record job takes about two seconds
    df = topics(500)
    run = BatchRun(df, CLAUDE, "Joke about {topic}", max_concurrent_jobs=1, **FAST)
    run.start()
    while not any(job.status == "InProgress" for job in run.status().jobs):
        time.sleep(0.02)
    run.stop()
    out = run.wait(timeout=60)
    assert out.index.equals(df.index)
    assert out["error"].notna().sum() >= 400  # four jobs never submitted, one stopped
    assert out["error"].str.contains("stopped|Stopped", regex=True).sum() >= 400
    assert run.status().phase == "stopped"
    assert aws.stats.jobs_created == 1


def test_stop_after_the_run_ended_changes_nothing(aws: LocalBedrock) -> None:
    run = BatchRun(topics(100), CLAUDE, "Joke about {topic}", **FAST)
    out = run.start().wait(timeout=60)
    run.stop()  # e.g. a stop button pressed as the run ended
    assert run.status().phase == "done"
    assert run.wait() is out
    assert out["error"].isna().all()


def test_run_batch_with_a_registered_prompt(aws: LocalBedrock) -> None:
    df = topics(100)
    out = run_batch(df, CLAUDE, prompt_id="joke_about_topic", progress=False, **FAST)
    assert out["error"].isna().all()
    assert all(t in r for t, r in zip(df["topic"], out["response"], strict=True))


def test_every_write_carries_the_kms_key(aws: LocalBedrock) -> None:
    kms = boto3.client("kms", endpoint_url=aws.s3_url)  # moto's server serves KMS too
    key_id = kms.create_key()["KeyMetadata"]["Arn"]
    run = BatchRun(
        topics(100),
        CLAUDE,
        "Joke about {topic}",
        kms_key_id=key_id,
        s3_bucket_owner="123456789012",
        **FAST,
    )
    run.wait(timeout=60)
    s3 = boto3.client("s3")
    ours = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=aws.bucket, Prefix=run.layout.root_key)["Contents"]
        if "/output/" not in o["Key"]  # written by Bedrock with the job's output key
    ]
    assert {k.rsplit("/", 1)[-1] for k in ours} >= {
        "run.json",
        "rows.parquet",
        "part-00001.jsonl",
        "results.parquet",
    }
    for key in ours:
        head = s3.head_object(Bucket=aws.bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == key_id, key


def test_errors_do_not_echo_prompts_or_credentials(aws: LocalBedrock) -> None:
    secret_text = "my private medical note " * 3000
    df = topics(120)
    df.loc["row-3", "topic"] = secret_text
    with pytest.raises(BatchInputError) as info:
        BatchRun(df, TITAN, "{topic}").validate()
    message = str(info.value)
    assert "row-3" in message and "private medical" not in message
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in message


def test_large_results_stream_to_parquet_and_in_batches(aws: LocalBedrock, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    df = topics(250)
    run = BatchRun(df, CLAUDE, "Joke about {topic}", **FAST)
    with pytest.raises(BatchRunError, match="no results yet"):
        run.to_parquet(str(tmp_path / "early.parquet"))
    out = run.wait(timeout=60)

    local = run.to_parquet(str(tmp_path / "jokes.parquet"), batch_rows=100)
    assert pq.ParquetFile(local).metadata.num_row_groups == 3
    pd.testing.assert_frame_equal(pd.read_parquet(local), out, check_dtype=False)

    uri = run.to_parquet(f"s3://{aws.bucket}/exports/jokes.parquet")
    body = boto3.client("s3").get_object(Bucket=aws.bucket, Key="exports/jokes.parquet")["Body"]
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(body.read())), out, check_dtype=False)
    assert uri.endswith("jokes.parquet")

    batches = list(run.iter_batches(100))
    assert [len(b) for b in batches] == [100, 100, 50]
    pd.testing.assert_frame_equal(pd.concat(batches), out)


def _anon_mib() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("RssAnon:"))
    return int(line.split()[1]) / 1024


def test_memory_a_run_freed_goes_back_to_the_system(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc keeps what a thread freed for reuse: a run gives it back after staging and
    around its final join, so that a kernel does not hold it for the rest of its life."""
    from bedrock_batch_nb import run as run_module

    if run_module._malloc_trim() is not None:  # glibc (Linux): the pages come back
        kept: list[bytes] = []

        def churn() -> None:  # 200 MB in a thread's heap, freed below one kept block
            held = [bytes(2_000) for _ in range(100_000)]
            kept.append(bytes(2_000))
            del held

        worker = threading.Thread(target=churn)
        worker.start()
        worker.join()
        before = _anon_mib()
        run_module.give_back_memory()
        assert before - _anon_mib() > 100
    else:  # elsewhere there is nothing to trim, and nothing fails
        run_module.give_back_memory()

    calls: list[int] = []
    give_back = run_module.give_back_memory

    def counted() -> None:
        calls.append(1)
        give_back()

    monkeypatch.setattr(run_module, "give_back_memory", counted)
    BatchRun(topics(150), CLAUDE, "Joke about {topic}", **FAST).wait(timeout=60)
    assert len(calls) == 3  # after staging, before and after the join


def test_a_run_over_max_frame_rows_returns_a_dataset_over_its_file(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.dataset as pa_dataset

    from bedrock_batch_nb import run as run_module

    monkeypatch.setenv("BEDROCK_BATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(run_module, "PARQUET_BATCH_ROWS", 64)  # several row groups
    df = topics(250)
    df.loc["row-7", "topic"] = "BROKEN"
    aws.faults.fail_text_containing = "BROKEN"  # a per-record error line
    template = "Joke about {topic}"
    run = BatchRun(df, CLAUDE, template, max_frame_rows=100, max_record_retries=0, **FAST)
    seen = [run.status().note]
    run.add_listener(lambda status: seen.append(status.note))
    from bedrock_batch_nb.collecting import SpilledValues

    spilled: list[int] = []
    setitem, put_many = SpilledValues.__setitem__, SpilledValues.put_many

    def count(self: SpilledValues, pos: int, value: object) -> None:
        spilled.append(pos)
        setitem(self, pos, value)

    def count_many(self: SpilledValues, positions: Any, values: Any) -> None:
        spilled.extend(positions.tolist())
        put_many(self, positions, values)

    monkeypatch.setattr(SpilledValues, "__setitem__", count)
    monkeypatch.setattr(SpilledValues, "put_many", count_many)
    result = run.wait(timeout=60)
    assert isinstance(result, pa_dataset.Dataset) and result.count_rows() == 250
    assert sorted(spilled) == [p for p in range(250) if p != 7]  # every answer went to disk
    assert any("over max_frame_rows" in (note or "") for note in seen)
    # the answers were kept in a file while collecting, gone once the results are written
    assert run.local_results_path.exists()
    assert not run.local_results_path.with_name("answers.utf8").exists()

    batches = list(run.iter_batches(100))
    assert [len(b) for b in batches] == [100, 100, 50]
    out = pd.concat(batches)
    assert out.index.equals(df.index)  # the DataFrame's own index, in input order
    answered = out.drop(index="row-7")
    answers_match_prompts(answered, df.drop(index="row-7"), "Joke about {topic}")
    assert out.loc["row-7", "error"] and pd.isna(out.loc["row-7", "response"])

    on_s3 = boto3.client("s3").get_object(Bucket=aws.bucket, Key=run.layout.results_key)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(on_s3["Body"].read())), out)
    local = run.to_parquet(str(tmp_path / "copy.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(local), out)

    from bedrock_batch_nb.progress import ResultSummary  # what the magic and the form show

    summary = ResultSummary.of(result)
    assert (summary.rows, summary.columns, summary.failed) == (250, 6, 1)
    pd.testing.assert_frame_equal(summary.head, out.head(10))


def test_an_embedding_run_streams_its_results_by_the_size_of_its_vectors(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_frame_rows left unset, an embedding run returns one DataFrame only while
    its vectors fit FRAME_VECTOR_BYTES (1 GiB: 131,072 rows of 1,024 numbers), as a
    text run does up to 1,000,000 rows; above it the answers go to a fixed-width file and
    the results stream to Parquet, the same vectors as the DataFrame's."""
    import pyarrow.dataset as pa_dataset

    from bedrock_batch_nb import config

    monkeypatch.setenv("BEDROCK_BATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(config, "FRAME_VECTOR_BYTES", 200 * 256 * 8)  # 200 rows at 256
    df = topics(250)
    options = {"input_text_column": "topic", "max_record_retries": 0, **FAST}
    large = BatchRun(df, TITAN, dimensions=256, **options)
    result = large.wait(timeout=60)
    assert isinstance(result, pa_dataset.Dataset)
    assert not large.local_results_path.with_name("answers.f64").exists()  # gone once written
    at_limit = BatchRun(df.iloc[:200], TITAN, dimensions=256, **options)
    assert isinstance(at_limit.wait(timeout=60), pd.DataFrame)
    texts = BatchRun(df, CLAUDE, "Joke about {topic}", max_record_retries=0, **FAST)
    texts.wait(timeout=60)
    assert isinstance(texts.result, pd.DataFrame)  # texts: still up to 1,000,000 rows

    small = BatchRun(df, TITAN, dimensions=256, max_frame_rows=1000, **options).wait(timeout=60)
    assert isinstance(small, pd.DataFrame)
    streamed = result.to_table().to_pandas()
    assert streamed.index.equals(df.index)
    for got, want in zip(streamed["embedding"], small["embedding"], strict=True):
        assert len(got) == 256 and got.tolist() == want.tolist()
    groups = pq.ParquetFile(large.local_results_path).metadata.num_row_groups
    assert groups == 1  # 250 rows of 256 numbers: one row group (up to 8,192 rows)


def test_a_text_run_with_long_prompts_streams_its_results(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_frame_rows left unset, a text run returns one DataFrame only while its
    prompts hold up to FRAME_TEXT_CHARS characters (about 1 GB; 20,000-character documents
    would make 1,000,000 rows 20 GB): above it, as many rows as that holds."""
    import pyarrow.dataset as pa_dataset

    from bedrock_batch_nb import config

    monkeypatch.setenv("BEDROCK_BATCH_CACHE_DIR", str(tmp_path / "cache"))
    df = topics(250)
    template = "Joke about {topic}"
    chars = sum(len(template.format(topic=t)) for t in df["topic"])
    monkeypatch.setattr(config, "FRAME_TEXT_CHARS", chars // 2)  # half the run's prompts
    run = BatchRun(df, CLAUDE, template, max_record_retries=0, **FAST)
    notes: list[str | None] = []
    run.add_listener(lambda status: notes.append(status.note))
    result = run.wait(timeout=60)
    assert isinstance(result, pa_dataset.Dataset) and result.count_rows() == 250
    limit = 250 * (chars // 2) // chars
    mean = chars // 250
    said = f"over max_frame_rows, {limit:,} here, for prompts of {mean:,} characters on average"
    assert any(said in (note or "") for note in notes)
    answers_match_prompts(result.to_table().to_pandas(), df, template)

    fewer = BatchRun(df.iloc[:100], CLAUDE, template, max_record_retries=0, **FAST)
    assert isinstance(fewer.wait(timeout=60), pd.DataFrame)  # their prompts fit
    chosen = BatchRun(df, CLAUDE, template, max_frame_rows=1000, max_record_retries=0, **FAST)
    assert isinstance(chosen.wait(timeout=60), pd.DataFrame)  # a value given is used as is


def test_a_file_of_wide_rows_is_staged_and_joined_in_fewer_rows_at_a_time(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where 10,000 of a Parquet file's rows would decode to over READ_AHEAD_BYTES (long
    documents), a run builds its jobs' files and joins its results in batches of fewer
    rows (the results' row groups show it), with the same lines and answers."""
    from bedrock_batch_nb import sources

    monkeypatch.setenv("BEDROCK_BATCH_CACHE_DIR", str(tmp_path / "cache"))
    df = topics(250)
    df["doc"] = [f"{topic}: " + "lorem ipsum " * 200 for topic in df["topic"]]  # 2.4 KB
    path = tmp_path / "docs.parquet"
    df.to_parquet(path, row_group_size=100)
    monkeypatch.setattr(sources, "READ_AHEAD_BYTES", 100_000)  # about 40 of these rows
    built: list[int] = []
    body_parts = RecordBuilder.body_parts

    def counted(self: RecordBuilder, texts: Any, positions: Any) -> Any:
        built.append(len(texts))
        return body_parts(self, texts, positions)

    monkeypatch.setattr(RecordBuilder, "body_parts", counted)
    template = "Summarize {doc}"
    run = BatchRun(str(path), CLAUDE, template, max_frame_rows=100, max_record_retries=0, **FAST)
    run.validate()  # (its size estimate builds a sample of lines)
    built.clear()
    run.start().wait(timeout=60)
    step = run.source.batch_rows
    assert 30 <= step <= 45 and sum(built) == 250 and max(built) <= step
    groups = pq.ParquetFile(run.local_results_path).metadata
    assert max(groups.row_group(g).num_rows for g in range(groups.num_row_groups)) <= step
    out = pd.read_parquet(run.local_results_path)
    assert out.index.equals(df.index)
    pd.testing.assert_frame_equal(out[df.columns.tolist()], df)
    assert out["error"].isna().all()
    for doc, response in zip(df["doc"], out["response"], strict=True):
        assert template.format(doc=doc)[:40] in response  # (the emulator echoes the prompt)


def test_staging_holds_input_files_up_to_stage_bytes(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big jobs' files are not all held at once: under a cap of one byte, each file is
    uploaded before the next is built, and every job still runs."""
    from bedrock_batch_nb import run as run_module

    monkeypatch.setattr(run_module, "STAGE_BYTES", 1)
    events: list[str] = []
    job_body, put_job = BatchRun._job_body, BatchRun._put_job

    def build(self: BatchRun, clients: Any, job: JobState) -> bytes | None:
        events.append(f"build {job.name}")
        return job_body(self, clients, job)

    def put(self: BatchRun, clients: Any, job: JobState, body: bytes) -> None:
        time.sleep(0.05)  # an upload that takes a while: the next build must wait for it
        put_job(self, clients, job, body)
        events.append(f"put {job.name}")

    monkeypatch.setattr(BatchRun, "_job_body", build)
    monkeypatch.setattr(BatchRun, "_put_job", put)
    df = topics(400)
    run = BatchRun(df, CLAUDE, "Joke about {topic}", max_records_per_job=100, **FAST)
    out = run.start().wait(timeout=60)
    answers_match_prompts(out, df, "Joke about {topic}")
    names = [job.name for job in run.status().jobs]
    assert events == [e for name in names for e in (f"build {name}", f"put {name}")]


def test_a_job_file_too_big_for_one_put_is_sent_as_it_is_built(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's file over aws.SINGLE_PUT_BYTES goes up in parts while it is built, not
    built whole first: its first part is sent before its last rows are built, and the
    job runs from the file that arrives, every row answered."""
    from bedrock_batch_nb import aws as aws_module

    monkeypatch.setattr(aws_module, "SINGLE_PUT_BYTES", 1 << 20)
    part_sent = threading.Event()
    create = aws_module.Clients.create

    def clients(region: str | None = None) -> aws_module.Clients:
        made = create(region)
        made.s3.meta.events.register("before-send.s3.UploadPart", lambda **_: part_sent.set())
        return made

    monkeypatch.setattr(aws_module.Clients, "create", clients)
    record_pieces = BatchRun.record_pieces
    waits: list[bool] = []

    def pieces(self: BatchRun, positions: range | list[int]) -> Iterator[bytes | bytearray]:
        built = 0
        for piece in record_pieces(self, positions):
            built += len(piece)
            if built > 9 << 20 and not waits:  # past s3transfer's first part (8 MiB)
                waits.append(part_sent.wait(30))  # (never, were the file built first)
            yield piece

    monkeypatch.setattr(BatchRun, "record_pieces", pieces)
    monkeypatch.setattr(sources_module, "READ_AHEAD_BYTES", 1 << 20)  # batches of ~400 rows
    topic = [f"topic {i} " + "lorem ipsum " * 200 for i in range(5_000)]  # 12 MiB
    path = tmp_path / "topics.parquet"
    pd.DataFrame({"topic": topic}).to_parquet(path, row_group_size=1_000)
    run = BatchRun(str(path), CLAUDE, "Joke about {topic}", max_records_per_job=5_000, **FAST)
    out = run.start().wait(timeout=120)
    assert out["error"].isna().all()
    assert [t in r for t, r in zip(topic, out["response"], strict=True)] == [True] * 5_000
    assert waits == [True]  # the first part went up before the file's last rows were built
    (job,) = run.status().jobs
    bucket, key = job.input_uri[len("s3://") :].split("/", 1)
    staged = aws.s3_client().get_object(Bucket=bucket, Key=key)
    assert staged["ETag"].strip('"').endswith("-2")  # a multipart upload's two parts
    assert staged["Body"].read() == run.record_body(range(5_000))


@pytest.mark.parametrize("streamed", [False, True])
def test_a_job_file_over_max_input_file_bytes_is_not_left_on_s3(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """Should a file outgrow the plan's estimate and the input file limit, the run stops
    with an error that says so, and no part of that file is left on S3 (a multipart
    upload is aborted, not left open)."""
    from bedrock_batch_nb import aws as aws_module

    if streamed:
        monkeypatch.setattr(aws_module, "SINGLE_PUT_BYTES", 1 << 20)
    monkeypatch.setattr(BatchRun, "_bytes_per_char", lambda self, sample: (10, 0.5))
    df = pd.DataFrame({"topic": [f"topic {i} " + "lorem ipsum " * 200 for i in range(5_000)]})
    limits = {"max_records_per_job": 5_000, "max_input_file_bytes": 10 << 20}
    run = BatchRun(df, CLAUDE, "Joke about {topic}", **limits, **FAST)
    assert run.plan()["input_bytes"].tolist() == [6_104_900]  # built, 12 MB
    with pytest.raises(BatchRunError, match="over max_input_file_bytes=10,485,760 bytes"):
        run.start().wait(timeout=60)
    s3 = aws.s3_client()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=aws.bucket)
    listed = s3.list_objects_v2(Bucket=aws.bucket, Prefix=f"bedrock-batch/{run.run_id}/input/")
    assert [o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])] == ["rows.parquet"]
    assert aws.stats.create_calls == 0


@pytest.mark.parametrize("model_id", [CLAUDE, TITAN])
def test_a_large_run_from_parquet_writes_what_the_dataframe_path_gives(
    aws: LocalBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_id: str
) -> None:
    """Over max_frame_rows the rows of a file are joined to their answers in Arrow, batch
    after batch: the file read back is the DataFrame the same run gives below the limit
    (index, input columns and their types, answers, errors, token counts)."""
    from bedrock_batch_nb import run as run_module

    monkeypatch.setenv("BEDROCK_BATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(run_module, "PARQUET_BATCH_ROWS", 64)  # several batches
    df = topics(250)
    df["score"] = np.arange(250) / 4  # a column of another type, carried through
    df.loc["row-7", "topic"] = "BROKEN"
    aws.faults.fail_text_containing = "BROKEN"  # a per-record error line
    path = tmp_path / "topics.parquet"
    df.to_parquet(path, row_group_size=100)
    options = {"max_record_retries": 0, "max_records_per_job": 100, **FAST}
    prompt = "Joke about {topic}" if model_id == CLAUDE else None
    if prompt is None:
        options["input_text_column"] = "topic"

    small_run = BatchRun(str(path), model_id, prompt, **options)
    assert isinstance(small_run.start().wait(timeout=60), pd.DataFrame)
    small = pd.read_parquet(small_run.to_parquet(str(tmp_path / "small.parquet")))
    large_run = BatchRun(str(path), model_id, prompt, max_frame_rows=100, **options)
    joined = run_module.BatchRun._arrow_batch
    arrow_batches: list[int] = []

    def spy(self: BatchRun, results: Any, raw: Any, start: int, schema: Any) -> Any:
        table = joined(self, results, raw, start, schema)
        if table is not None:
            arrow_batches.append(start)
        return table

    monkeypatch.setattr(run_module.BatchRun, "_arrow_batch", spy)
    large_run.start().wait(timeout=60)
    assert arrow_batches == [64, 128, 192]  # every batch after the first, in Arrow
    out = pd.read_parquet(large_run.local_results_path)
    assert out.index.equals(df.index)
    if model_id == CLAUDE:
        pd.testing.assert_frame_equal(out, small)
    else:  # (arrays of floats, compared one by one)
        kept = out.drop(columns=["embedding"])
        pd.testing.assert_frame_equal(kept, small.drop(columns=["embedding"]))
        for got, want in zip(out["embedding"], small["embedding"], strict=True):
            assert (got is None) == (want is None)
            assert want is None or list(got) == list(want)
    assert out.loc["row-7", "error"] and out["error"].notna().sum() == 1
