"""How records are cut into jobs.

Chunks fill up to ``max_records_per_job`` records (and the input-file byte limit, when
record sizes are known) in input order.  A short last chunk is never submitted alone:
it is merged with the one before, and the pair is split evenly again when both halves
can stay at or above the job minimum, so ``1,050`` rows at ``1,000`` per job give two jobs
of 525, never one of 50.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import BatchInputError


@dataclass(frozen=True)
class Chunk:
    """Rows ``start`` (inclusive) to ``stop`` (exclusive), by position, of job ``index``."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def plan_chunks(
    n_records: int,
    *,
    max_records_per_job: int,
    min_records_per_job: int,
    max_num_jobs: int | None = None,
    record_bytes: Sequence[int] | npt.NDArray[Any] | None = None,
    max_file_bytes: int | None = None,
) -> list[Chunk]:
    """Cut ``n_records`` into job-sized chunks; see the module docstring for the rules."""
    if n_records < min_records_per_job:
        raise BatchInputError(
            f"{n_records:,} records is below the batch job minimum of {min_records_per_job:,}."
        )
    sizes = None if record_bytes is None else np.asarray(record_bytes)
    if sizes is not None and len(sizes) != n_records:
        raise ValueError("record_bytes must hold one size per record")

    def bytes_of(start: int, stop: int) -> int:
        return 0 if sizes is None else int(sizes[start:stop].sum(dtype=np.int64))

    bounds: list[tuple[int, int]] = []
    start = 0
    while start < n_records:
        stop = min(start + max_records_per_job, n_records)
        if sizes is not None and max_file_bytes is not None:
            # running totals over this job's records only (not over every record: memory)
            ends = np.cumsum(sizes[start:stop], dtype=np.int64)
            fit = start + int(np.searchsorted(ends, max_file_bytes, side="right"))
            if fit <= start:
                raise BatchInputError(
                    f"Record {start} alone is {int(sizes[start]):,} bytes, over the input file "
                    f"limit of {max_file_bytes:,} bytes: shorten its text."
                )
            stop = min(stop, fit)
        bounds.append((start, stop))
        start = stop

    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_records_per_job:
        (a, _), (_, b) = bounds[-2], bounds[-1]
        total = b - a
        if total >= 2 * min_records_per_job:
            middle = a + (total + 1) // 2
            bounds[-2:] = [(a, middle), (middle, b)]
        else:
            bounds[-2:] = [(a, b)]
        if max_file_bytes is not None and any(
            bytes_of(s, e) > max_file_bytes for s, e in bounds[-2:]
        ):
            raise BatchInputError(
                "The last job cannot be kept above the record minimum and under the input "
                f"file limit of {max_file_bytes:,} bytes: raise max_records_per_job or "
                "shorten the records."
            )

    if max_num_jobs is not None and len(bounds) > max_num_jobs:
        needed = -(-n_records // max_num_jobs)
        raise BatchInputError(
            f"{n_records:,} records need {len(bounds)} jobs at {max_records_per_job:,} per job, "
            f"over max_num_jobs={max_num_jobs}: raise max_records_per_job to at least "
            f"{needed:,}, raise max_num_jobs, or cap the rows with max_records_total."
        )
    return [Chunk(i + 1, s, e) for i, (s, e) in enumerate(bounds)]
