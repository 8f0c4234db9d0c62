"""Nothing lost: every fault ends with every row back exactly once and no job paid twice."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import boto3
import pandas as pd
import pytest

from bedrock_batch_nb import BatchInputError, BatchRun, BatchRunError, list_runs
from bedrock_batch_nb.journal import cache_dir
from bedrock_batch_nb.local import LocalBedrock
from bedrock_batch_nb.orchestrator import JobState

pytestmark = pytest.mark.e2e

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
FAST = {"poll_interval": 0.05, "max_poll_interval": 0.2}
TEMPLATE = "Joke about {topic}"


def topics(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"topic": [f"topic number {i}" for i in range(n)]},
        index=pd.Index([f"row-{i}" for i in range(n)], name="key"),
    )


def assert_every_row_once(out: pd.DataFrame, df: pd.DataFrame) -> None:
    """Same rows in the same order; each with its own answer or an explanatory error."""
    assert out.index.equals(df.index)
    assert out["topic"].tolist() == df["topic"].tolist()
    answered = out["error"].isna()
    assert out.loc[answered, "response"].notna().all()
    for topic, response in zip(
        out.loc[answered, "topic"], out.loc[answered, "response"], strict=True
    ):
        assert f"Joke about {topic}" in response
    assert (out.loc[~answered, "error"].str.len() > 10).all()


def assert_no_job_submitted_twice(aws: LocalBedrock, run: BatchRun) -> None:
    names = [job.name for job in run.status().jobs]
    assert len(names) == len(set(names))
    assert aws.stats.jobs_created == len(names)


@pytest.fixture(autouse=True)
def local_cache(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDROCK_BATCH_CACHE_DIR", str(tmp_path))


def run_in_child(n: int, crash_at: str, **options: object) -> tuple[str, int]:
    """Start a run in another process that dies at ``crash_at``; return its run id and
    exit code (75: killed by the crash point)."""
    script = textwrap.dedent(
        f"""
        import pandas as pd
        from bedrock_batch_nb import BatchRun
        df = pd.DataFrame({{"topic": [f"topic number {{i}}" for i in range({n})]}},
                          index=pd.Index([f"row-{{i}}" for i in range({n})], name="key"))
        run = BatchRun(df, {CLAUDE!r}, {TEMPLATE!r}, **{options!r})
        print(run.run_id, flush=True)
        run.start().wait(120)
        """
    )
    env = {**os.environ, "BEDROCK_BATCH_CRASH_AT": crash_at}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    return done.stdout.split()[0], done.returncode


@pytest.mark.parametrize(
    "crash_at",
    [
        "staging:2",  # while staging: two inputs uploaded, nothing submitted
        "staged:1",  # everything staged, nothing submitted
        "submitted:2",  # between submissions
        "polled:3",  # while waiting
        "collected:1",  # during collection
        "collected:3",
    ],
)
def test_resume_after_the_process_dies(aws: LocalBedrock, crash_at: str) -> None:
    options = {"max_records_per_job": 100, "max_concurrent_jobs": 2, **FAST}
    run_id, code = run_in_child(420, crash_at, **options)
    assert code == 75, "the child should have died at the crash point"
    created_before = aws.stats.jobs_created

    assert run_id in list_runs()["run_id"].tolist()
    run = BatchRun.resume(run_id, **FAST)
    out = run.wait(timeout=120)
    assert_every_row_once(out, topics(420))
    assert out["error"].isna().all()
    assert len(run.status().jobs) == 4
    assert aws.stats.jobs_created == 4 >= created_before
    assert_no_job_submitted_twice(aws, run)


def test_failed_records_are_retried_in_new_jobs(aws: LocalBedrock) -> None:
    aws.faults.record_error_rate = 0.3
    df = topics(600)
    run = BatchRun(df, CLAUDE, TEMPLATE, max_records_per_job=200, max_record_retries=2, **FAST)
    out = run.wait(timeout=120)
    assert_every_row_once(out, df)
    attempts = [job.attempt for job in run.status().jobs]
    assert attempts.count(0) == 3 and attempts.count(1) >= 1
    # 0.3 of the rows fail the first pass (about 180, retried in one job); about 0.3 of
    # those fail again, fewer than a job's minimum, so they stay failed and say why.
    failed = out["error"].notna().sum()
    assert 0 < failed < 0.3 * 0.5 * len(df)
    assert out.loc[out["error"].notna(), "error"].str.contains("not retried").all()
    assert out.loc[out["error"].notna(), "error"].str.contains("ModelErrorException").all()
    assert_no_job_submitted_twice(aws, run)


def test_no_retries_when_disabled(aws: LocalBedrock) -> None:
    aws.faults.record_error_rate = 0.3
    df = topics(300)
    run = BatchRun(df, CLAUDE, TEMPLATE, max_record_retries=0, **FAST)
    out = run.wait(timeout=60)
    assert 0.15 * len(df) < out["error"].notna().sum() < 0.45 * len(df)
    assert len(run.status().jobs) == 1


def test_few_failures_fall_back_to_on_demand_when_allowed(aws: LocalBedrock) -> None:
    aws.faults.drop_output_lines = 0.05
    df = topics(300)
    out = BatchRun(df, CLAUDE, TEMPLATE, on_demand_fallback=True, **FAST).wait(timeout=60)
    assert_every_row_once(out, df)
    assert out["error"].isna().all()
    assert 0 < aws.stats.invoke_calls < 60


def test_few_failures_say_why_they_were_not_retried(aws: LocalBedrock) -> None:
    aws.faults.drop_output_lines = 0.05
    out = BatchRun(topics(300), CLAUDE, TEMPLATE, **FAST).wait(timeout=60)
    errors = out.loc[out["error"].notna(), "error"]
    assert len(errors) > 0
    assert errors.str.contains("fewer than a job's minimum").all()
    assert errors.str.contains("on_demand_fallback=True").all()


def test_corrupt_output_lines_are_counted_and_retried(aws: LocalBedrock) -> None:
    rate = 0.4  # (which lines are corrupted depends on the job ids: new every run)
    aws.faults.corrupt_output_lines = rate
    df = topics(400)
    run = BatchRun(df, CLAUDE, TEMPLATE, max_records_per_job=200, max_record_retries=3, **FAST)
    out = run.wait(timeout=120)
    assert_every_row_once(out, df)
    first = [job for job in run.status().jobs if job.attempt == 0]
    assert all(job.unreadable_lines > 40 for job in first)  # about 80 of 200 each
    # About 160 rows are retried in one job (at a rate of 0.3, now and then fewer than
    # the 100 a job needs); the ~64 corrupted again are fewer than a job's minimum: they
    # stay failed, and say that their line was unreadable.
    failed = out.loc[out["error"].notna(), "error"]
    assert 0 < len(failed) < 0.6 * rate * len(df)
    assert failed.str.contains("unreadable line").all()


def test_partially_completed_and_expired_jobs_keep_what_finished(aws: LocalBedrock) -> None:
    aws.faults.partial_jobs = 1
    aws.faults.expire_jobs = 1
    df = topics(400)
    run = BatchRun(df, CLAUDE, TEMPLATE, max_records_per_job=200, **FAST)
    out = run.wait(timeout=120)
    statuses = sorted(job.status for job in run.status().jobs if job.attempt == 0)
    assert statuses == ["Expired", "PartiallyCompleted"]
    assert_every_row_once(out, df)
    assert out["error"].isna().all()  # what did not finish was retried in new jobs
    assert_no_job_submitted_twice(aws, run)


def test_a_failed_job_stops_the_run_early_with_its_message(aws: LocalBedrock) -> None:
    aws.faults.fail_jobs = 1
    aws.timings.records_per_second = 200
    df = topics(1000)
    run = BatchRun(df, CLAUDE, TEMPLATE, max_records_per_job=100, max_concurrent_jobs=2, **FAST)
    with pytest.raises(BatchRunError, match=r"failed: .*resume"):
        run.wait(timeout=120)
    assert aws.stats.jobs_created < 10  # not the whole dataset
    assert run.result is not None
    assert run.result.index.equals(df.index)
    assert run.result["error"].notna().sum() >= 100


def test_a_bucket_that_does_not_exist_is_named_in_the_error(aws: LocalBedrock) -> None:
    run = BatchRun(topics(150), CLAUDE, TEMPLATE, bucket="no-such-bucket-here", **FAST)
    with pytest.raises(BatchRunError, match=r"to s3://no-such-bucket-here/.*NoSuchBucket"):
        run.wait(timeout=60)
    assert run.status().phase == "failed"
    assert aws.stats.create_calls == 0


def test_s3_failing_midway_stops_the_run_with_its_step_cause_and_resume(
    aws: LocalBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AWS error that botocore's retries do not get past, in the middle of a run (here
    S3 refusing the third job's input file: its bucket does not exist), is not raised raw
    from wait(): the run's error names the step, the cause and how to go on, and keeps
    the AWS error as its cause."""
    from botocore.exceptions import ClientError

    put_job = BatchRun._put_job

    def put(self: BatchRun, clients: object, job: JobState, body: object) -> None:
        if job.chunk.index == 3:
            job = dataclasses.replace(job, input_uri="s3://no-such-bucket-here/part.jsonl")
        put_job(self, clients, job, body)  # type: ignore[arg-type]

    monkeypatch.setattr(BatchRun, "_put_job", put)
    aws.timings.records_per_second = 50  # no job ends before the run stops
    run = BatchRun(topics(500), CLAUDE, TEMPLATE, max_records_per_job=100, **FAST)
    with pytest.raises(BatchRunError) as raised:
        run.wait(timeout=60)
    third = run.status().jobs[2]
    assert str(raised.value).startswith(
        f"The run stopped while staging job {third.name}'s input to {third.input_uri}: "
        "NoSuchBucket: The specified bucket does not exist. Jobs already submitted go on "
        f"running on Bedrock. Once the cause is fixed, BatchRun.resume({run.run_id!r})"
    )
    assert isinstance(raised.value.__cause__, ClientError)
    assert run.error is raised.value
    assert run.status().phase == "failed"


def test_throttling_and_quota_are_waited_out(aws: LocalBedrock) -> None:
    aws.faults.throttle_rate = 0.2
    aws.faults.quota_exceeded_creates = 3
    aws.quota = 2
    df = topics(500)
    run = BatchRun(df, CLAUDE, TEMPLATE, max_records_per_job=100, max_concurrent_jobs=4, **FAST)
    out = run.wait(timeout=120)
    assert_every_row_once(out, df)
    assert out["error"].isna().all()
    assert aws.stats.throttled_calls > 0
    assert aws.stats.max_active_jobs <= 2
    assert_no_job_submitted_twice(aws, run)


def test_a_create_refused_for_the_quota_with_no_job_of_the_run_running_is_tried_again(
    aws: LocalBedrock,
) -> None:
    """Other runs hold the account's quota: the run's only job is refused three times while
    none of its own jobs is running (so none ends to bring the submitter back)."""
    aws.faults.quota_exceeded_creates = 3
    df = topics(100)
    run = BatchRun(df, CLAUDE, TEMPLATE, **FAST)
    out = run.wait(timeout=60)
    assert_every_row_once(out, df)
    assert out["error"].isna().all()
    assert aws.stats.create_calls == 4 and aws.stats.jobs_created == 1


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)


def test_slots_that_other_runs_free_are_taken_while_the_runs_own_jobs_sit_scheduled(
    aws: LocalBedrock,
) -> None:
    """Another run holds most of the quota, so the run's cap drops to its one job; that job
    then sits Scheduled (as real jobs can for hours, with nothing changing).  Once the other
    run's jobs end, the run still raises its cap and fills the freed slots."""
    aws.quota = 3
    aws.timings.scheduled = 120.0  # every job waits Scheduled until the test lets them go
    other = BatchRun(topics(200), CLAUDE, TEMPLATE, max_records_per_job=100, **FAST)
    other.start()
    wait_for(lambda: aws.stats.jobs_created == 2, 30, "the other run's two jobs")
    run = BatchRun(
        topics(300), CLAUDE, TEMPLATE, max_records_per_job=100, max_concurrent_jobs=3, **FAST
    )
    run.start()
    wait_for(
        lambda: [j.status for j in run.status().jobs if j.arn].count("Scheduled") == 1,
        30,
        "the run's first job Scheduled",
    )
    assert aws.stats.create_calls > aws.stats.jobs_created  # the quota refused the others
    other.stop()
    other.wait(timeout=60)
    submitted = lambda: sum(j.arn is not None for j in run.status().jobs)  # noqa: E731
    wait_for(lambda: submitted() == 3, 20, "the freed slots taken")
    assert all(j.status in ("Submitted", "Validating", "Scheduled") for j in run.status().jobs)
    aws.timings.scheduled = 0.05
    out = run.wait(timeout=60)
    assert_every_row_once(out, topics(300))
    assert aws.stats.jobs_created == 2 + 3  # the other run's and the run's, none twice


def stopped_while_its_first_job_runs(aws: LocalBedrock, df: pd.DataFrame) -> BatchRun:
    """A run of slow 100-record jobs, one at a time, stopped once the first is running;
    the emulator is fast again afterwards."""
    aws.timings.records_per_second = 100
    run = BatchRun(df, CLAUDE, TEMPLATE, max_records_per_job=100, max_concurrent_jobs=1, **FAST)
    run.start()
    while not any(job.status == "InProgress" for job in run.status().jobs):
        pass
    run.stop()
    run.wait(timeout=60)
    aws.timings.records_per_second = 100_000
    return run


def test_stop_leaves_the_run_resumable(aws: LocalBedrock) -> None:
    df = topics(500)
    run = stopped_while_its_first_job_runs(aws, df)
    stopped = run.result
    assert isinstance(stopped, pd.DataFrame)
    assert stopped["error"].notna().sum() >= 400
    assert list_runs().set_index("run_id").loc[run.run_id, "phase"] == "stopped"

    again = BatchRun.resume(run.run_id, on_demand_fallback=True, **FAST)
    out = again.wait(timeout=120)
    assert_every_row_once(out, df)
    assert out["error"].isna().all()
    assert_no_job_submitted_twice(aws, again)


def test_resume_without_the_saved_rows_asks_for_them(aws: LocalBedrock) -> None:
    df = topics(200)
    run = stopped_while_its_first_job_runs(aws, df)
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=aws.bucket, Key=f"{run.layout.root_key}/input/rows.parquet")

    with pytest.raises(
        BatchInputError, match=r"no saved input rows at s3://.*rows\.parquet.*data="
    ):
        BatchRun.resume(run.run_id, **FAST)
    again = BatchRun.resume(run.run_id, data=df, **FAST)
    assert_every_row_once(again.wait(timeout=120), df)


def test_journal_is_cached_locally(aws: LocalBedrock) -> None:
    run = BatchRun(topics(100), CLAUDE, TEMPLATE, **FAST)
    run.wait(timeout=60)
    assert (cache_dir() / f"{run.run_id}.json").exists()


def test_soak_all_faults_at_once(aws: LocalBedrock) -> None:
    """Dozens of jobs with every fault on: rows lost must be 0, duplicate jobs 0.
    ``BEDROCK_BATCH_SOAK_JOBS`` makes it longer."""
    jobs = int(os.environ.get("BEDROCK_BATCH_SOAK_JOBS", "24"))
    aws.faults.update(
        {
            "record_error_rate": 0.05,
            "throttle_rate": 0.1,
            "quota_exceeded_creates": 2,
            "partial_jobs": 2,
            "expire_jobs": 1,
            "drop_output_lines": 0.02,
            "corrupt_output_lines": 0.02,
        }
    )
    aws.quota = 6
    df = topics(100 * jobs)
    run = BatchRun(
        df,
        CLAUDE,
        TEMPLATE,
        max_records_per_job=100,
        max_concurrent_jobs=8,
        max_record_retries=2,
        on_demand_fallback=True,
        **FAST,
    )
    out = run.wait(timeout=600)
    assert_every_row_once(out, df)
    lost = len(df) - len(out)
    duplicates = aws.stats.jobs_created - len({j.name for j in run.status().jobs})
    print(
        f"soak: {jobs} jobs, {len(df):,} rows, lost {lost}, duplicate jobs {duplicates}, "
        f"unanswered {int(out['error'].notna().sum())}"
    )
    assert lost == 0 and duplicates == 0
    assert out["error"].isna().all()
