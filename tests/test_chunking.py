"""Chunking: job sizes, the short-tail rule, byte limits and max_num_jobs."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from bedrock_batch_nb.chunking import ChunkPlanner, plan_chunks
from bedrock_batch_nb.errors import BatchInputError


def sizes(n: int, **kwargs: int) -> list[int]:
    kwargs.setdefault("max_records_per_job", 1000)
    kwargs.setdefault("min_records_per_job", 100)
    return [c.size for c in plan_chunks(n, **kwargs)]


def test_2345_rows_at_1000_per_job_make_three_jobs() -> None:
    chunks = plan_chunks(2345, max_records_per_job=1000, min_records_per_job=100)
    assert [c.size for c in chunks] == [1000, 1000, 345]
    assert [c.index for c in chunks] == [1, 2, 3]
    assert chunks[0].start == 0 and chunks[-1].stop == 2345
    assert all(a.stop == b.start for a, b in itertools.pairwise(chunks))


def test_1050_rows_never_yield_a_50_record_job() -> None:
    assert sizes(1050) == [525, 525]


def test_tail_merged_whole_when_halves_would_fall_below_minimum() -> None:
    # 150 per job: 160 rows give 150 + 10; halves of 160 would be 80 < 100, so one job.
    assert sizes(160, max_records_per_job=150) == [160]


@pytest.mark.parametrize("n", [100, 999, 1000, 1001, 1099, 1100, 5000, 50_001, 123_457])
def test_every_job_within_limits_and_rows_covered(n: int) -> None:
    got = sizes(n)
    assert sum(got) == n
    assert min(got) >= 100
    assert max(got) <= 1000


def test_below_minimum_is_an_error_that_says_so() -> None:
    with pytest.raises(BatchInputError, match="below the batch job minimum of 100"):
        plan_chunks(99, max_records_per_job=1000, min_records_per_job=100)


def test_byte_limit_cuts_jobs_earlier() -> None:
    # 1,000 records of 1,000 bytes with a 300 kB file limit: 300 per file.
    chunks = plan_chunks(
        1000,
        max_records_per_job=1000,
        min_records_per_job=100,
        record_bytes=[1000] * 1000,
        max_file_bytes=300_000,
    )
    assert [c.size for c in chunks] == [300, 300, 300, 100]


def test_single_record_over_byte_limit_is_an_error() -> None:
    with pytest.raises(BatchInputError, match="over the input file limit"):
        plan_chunks(
            200,
            max_records_per_job=1000,
            min_records_per_job=100,
            record_bytes=[10] * 150 + [5000] + [10] * 49,
            max_file_bytes=4000,
        )


def test_max_num_jobs_exceeded_says_what_to_change() -> None:
    with pytest.raises(BatchInputError, match=r"need 3 jobs.*max_num_jobs=2.*at least 1,173"):
        plan_chunks(2345, max_records_per_job=1000, min_records_per_job=100, max_num_jobs=2)
    assert (
        len(plan_chunks(2345, max_records_per_job=1000, min_records_per_job=100, max_num_jobs=3))
        == 3
    )


def test_varied_record_sizes_fill_each_file_up_to_the_byte_limit() -> None:
    """Records of varied sizes: every job is under both limits, in input order, and each
    but the last two (which the short-tail rule may rebalance) is as full as it can be."""
    rng = random.Random(5)
    for _ in range(200):
        n = rng.randint(100, 3000)
        record_bytes = [rng.choice([rng.randint(1, 50), rng.randint(50, 2000)]) for _ in range(n)]
        limit = rng.randint(2000, 60_000)
        per_job = rng.randint(100, 1500)
        try:
            chunks = plan_chunks(
                n,
                max_records_per_job=per_job,
                min_records_per_job=1,
                record_bytes=record_bytes,
                max_file_bytes=limit,
            )
        except BatchInputError:
            assert max(record_bytes) > limit
            continue
        assert [c.start for c in chunks] == [0] + [c.stop for c in chunks[:-1]]
        assert chunks[-1].stop == n
        for c in chunks:
            assert 0 < c.size <= per_job
            assert sum(record_bytes[c.start : c.stop]) <= limit
        for c in chunks[:-2]:  # full: one more record would break a limit
            more = sum(record_bytes[c.start : c.stop + 1])
            assert c.size == per_job or more > limit


def whole_plan(
    record_bytes: list[int], per_job: int, minimum: int, limit: int
) -> list[tuple[int, int]] | str:
    """The rules applied to every record's size at once, as plainly as they read (each job
    as full as both limits allow, then the short-tail rule): the jobs, or the error."""
    n = len(record_bytes)
    if n < minimum:
        return "below the batch job minimum"
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < n:
        stop = start
        while stop < n and stop - start < per_job and sum(record_bytes[start : stop + 1]) <= limit:
            stop += 1
        if stop == start:
            return "alone is"
        bounds.append((start, stop))
        start = stop
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < minimum:
        (a, _), (_, b) = bounds[-2], bounds[-1]
        middle = a + (b - a + 1) // 2
        bounds[-2:] = [(a, middle), (middle, b)] if b - a >= 2 * minimum else [(a, b)]
        if any(sum(record_bytes[s:e]) > limit for s, e in bounds[-2:]):
            return "The last job cannot be kept"
    return bounds


def test_jobs_planned_a_batch_of_sizes_at_a_time_are_the_jobs_planned_whole() -> None:
    """A run plans its jobs as its rows come, a batch of sizes at a time: whatever the
    batches, the same jobs (and bytes, and errors) as the rules applied to every size at
    once, and never more sizes held than two jobs' worth and a batch."""
    rng = random.Random(17)
    for _ in range(400):
        n = rng.randint(1, 2500)
        big = rng.random() < 0.1
        record_bytes = [
            rng.choice([rng.randint(1, 50), rng.randint(50, 2000 if not big else 9000)])
            for _ in range(n)
        ]
        per_job = rng.randint(1, 600)
        minimum = rng.randint(1, max(1, per_job // 2))
        limit = rng.randint(2000, 60_000)
        expected = whole_plan(record_bytes, per_job, minimum, limit)
        planner = ChunkPlanner(
            max_records_per_job=per_job, min_records_per_job=minimum, max_file_bytes=limit
        )
        batch = rng.randint(1, 700)
        for at in range(0, n, batch):
            planner.add(np.array(record_bytes[at : at + batch], np.int32))
            assert planner.held <= 2 * per_job + batch
        assert planner.records == n
        if isinstance(expected, str):
            with pytest.raises(BatchInputError, match=expected):
                planner.finish()
            continue
        chunks = planner.finish()
        assert [(c.start, c.stop) for c in chunks] == expected
        assert [c.index for c in chunks] == list(range(1, len(chunks) + 1))
        assert planner.job_bytes == [sum(record_bytes[s:e]) for s, e in expected]
