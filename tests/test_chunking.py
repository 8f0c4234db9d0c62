"""Chunking: job sizes, the short-tail rule, byte limits and max_num_jobs."""

from __future__ import annotations

import itertools
import random

import pytest

from bedrock_batch_nb.chunking import plan_chunks
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
