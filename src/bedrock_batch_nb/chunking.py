"""How records are cut into jobs.

Chunks fill up to ``max_records_per_job`` records (and the input-file byte limit, when
record sizes are known) in input order.  A short last chunk is never submitted alone:
it is merged with the one before, and the pair is split evenly again when both halves
can stay at or above the job minimum, so ``1,050`` rows at ``1,000`` per job give two jobs
of 525, never one of 50.

A run plans its jobs as it checks its rows, a batch of record sizes at a time
(:class:`ChunkPlanner`): it holds the sizes of the records not yet in a job that can no
longer change, at most two jobs' worth and a batch, not one size per record of the run.
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
    sizes = np.zeros(n_records, np.int8) if record_bytes is None else np.asarray(record_bytes)
    if len(sizes) != n_records:
        raise ValueError("record_bytes must hold one size per record")
    planner = ChunkPlanner(
        max_records_per_job=max_records_per_job,
        min_records_per_job=min_records_per_job,
        max_num_jobs=max_num_jobs,
        max_file_bytes=None if record_bytes is None else max_file_bytes,
    )
    planner.add(sizes)
    return planner.finish()


class ChunkPlanner:
    """:func:`plan_chunks` over record sizes given a batch at a time (:meth:`add`), in
    input order: the same jobs, from :meth:`finish`.

    A job is settled once a whole job and at least one more record follow it: it cannot
    be one of the last two, which the short-tail rule may merge or split again, so its
    records' sizes are let go of.  ``job_bytes`` holds each job's bytes, once finished."""

    def __init__(
        self,
        *,
        max_records_per_job: int,
        min_records_per_job: int,
        max_num_jobs: int | None = None,
        max_file_bytes: int | None = None,
    ) -> None:
        self.max_records = max_records_per_job
        self.min_records = min_records_per_job
        self.max_num_jobs = max_num_jobs
        self.max_file_bytes = max_file_bytes
        self.job_bytes: list[int] = []
        self._settled: list[tuple[int, int]] = []  # jobs that can no longer change
        self._start = 0  # the first record of no settled job
        self._held: list[npt.NDArray[Any]] = []  # the sizes of the records from there on
        self._count = 0  # records added
        self._too_big: str | None = None  # a record alone over the file limit

    @property
    def records(self) -> int:
        """How many records were added."""
        return self._count

    @property
    def held(self) -> int:
        """How many records' sizes are held now."""
        return sum(len(sizes) for sizes in self._held)

    def add(self, record_bytes: Sequence[int] | npt.NDArray[Any]) -> None:
        """The next records' sizes (in bytes)."""
        sizes = np.asarray(record_bytes)
        self._count += len(sizes)
        if self._too_big is not None:  # (no plan: finish() says why; nothing more held)
            return
        self._held.append(sizes)
        if self._count - self._start <= 2 * self.max_records:
            return  # (not enough to settle a job yet, whatever the sizes)
        tail = np.concatenate(self._held)
        settled = 0
        while (first := self._cut(tail, settled, final=False)) is not None:
            second = self._cut(tail, first, final=False)
            if second is None or second >= len(tail):
                break
            self._settled.append((self._start + settled, self._start + first))
            self.job_bytes.append(int(tail[settled:first].sum(dtype=np.int64)))
            settled = first
        if self._too_big is not None:
            self._held = []
            return
        self._held = [tail[settled:]]
        self._start += settled

    def _cut(self, tail: npt.NDArray[Any], at: int, *, final: bool) -> int | None:
        """Where the job that starts at ``tail[at]`` ends (an index into ``tail``), or None
        when the records to come may still join it (unless ``final``: no more come)."""
        stop = min(at + self.max_records, len(tail))
        if self.max_file_bytes is not None:
            # running totals over this job's records only (not over every record: memory)
            ends = np.cumsum(tail[at:stop], dtype=np.int64)
            fit = int(np.searchsorted(ends, self.max_file_bytes, side="right"))
            if fit == 0:
                self._too_big = (
                    f"Record {self._start + at} alone is {int(tail[at]):,} bytes, over the "
                    f"input file limit of {self.max_file_bytes:,} bytes: shorten its text."
                )
                return None
            if at + fit < stop:
                return at + fit
        if final or stop - at == self.max_records:
            return stop
        return None

    def finish(self) -> list[Chunk]:
        """The jobs: every record added, cut by the rules (see the module docstring)."""
        n_records = self._count
        if n_records < self.min_records:
            raise BatchInputError(
                f"{n_records:,} records is below the batch job minimum of {self.min_records:,}."
            )
        tail = np.concatenate(self._held) if self._held else np.zeros(0, np.int64)
        at = 0
        rest: list[tuple[int, int]] = []
        while self._too_big is None and at < len(tail):
            stop = self._cut(tail, at, final=True)
            if stop is None:
                break
            rest.append((at, stop))
            at = stop
        if self._too_big is not None:
            raise BatchInputError(self._too_big)

        def bytes_of(start: int, stop: int) -> int:
            return int(tail[start:stop].sum(dtype=np.int64))

        if len(self._settled) + len(rest) > 1 and rest[-1][1] - rest[-1][0] < self.min_records:
            # (the last two are both in the tail: a settled job has two more after it)
            (a, _), (_, b) = rest[-2], rest[-1]
            total = b - a
            if total >= 2 * self.min_records:
                middle = a + (total + 1) // 2
                rest[-2:] = [(a, middle), (middle, b)]
            else:
                rest[-2:] = [(a, b)]
            if self.max_file_bytes is not None and any(
                bytes_of(s, e) > self.max_file_bytes for s, e in rest[-2:]
            ):
                raise BatchInputError(
                    "The last job cannot be kept above the record minimum and under the input "
                    f"file limit of {self.max_file_bytes:,} bytes: raise max_records_per_job "
                    "or shorten the records."
                )

        bounds = self._settled + [(self._start + s, self._start + e) for s, e in rest]
        if self.max_num_jobs is not None and len(bounds) > self.max_num_jobs:
            needed = -(-n_records // self.max_num_jobs)
            raise BatchInputError(
                f"{n_records:,} records need {len(bounds)} jobs at {self.max_records:,} per "
                f"job, over max_num_jobs={self.max_num_jobs}: raise max_records_per_job to at "
                f"least {needed:,}, raise max_num_jobs, or cap the rows with max_records_total."
            )
        self.job_bytes = self.job_bytes[: len(self._settled)] + [bytes_of(s, e) for s, e in rest]
        return [Chunk(i + 1, s, e) for i, (s, e) in enumerate(bounds)]
