"""Faults to inject, mutable at run time (in process or over ``POST /_local/faults``)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def hit(key: str, rate: float, salt: str = "") -> bool:
    """Deterministic Bernoulli draw: the same key, rate and salt always give the same answer."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass
class Faults:
    """What goes wrong. Counters (``*_jobs``, ``quota_exceeded_creates``) are used up as they fire.

    A job is doomed at creation, by counter or by a substring of its name.
    """

    record_error_rate: float = 0.0
    """Fraction of records (by recordId hash) answered with an error line, errorCode 500."""
    fail_text_containing: str | None = None
    """Records (and runtime calls) whose body contains this string fail."""
    throttle_rate: float = 0.0
    """Fraction of API calls answered with ThrottlingException (429)."""
    throttle_next_calls: int = 0
    """The next N API calls are throttled."""
    quota_exceeded_creates: int = 0
    """The next N CreateModelInvocationJob calls raise ServiceQuotaExceededException."""
    fail_jobs: int = 0
    fail_job_names: list[str] = field(default_factory=list)
    expire_jobs: int = 0
    expire_job_names: list[str] = field(default_factory=list)
    partial_jobs: int = 0
    partial_job_names: list[str] = field(default_factory=list)
    partial_fraction: float = 0.5
    """Share of records that an Expired / PartiallyCompleted job gets done."""
    drop_output_lines: float = 0.0
    """Fraction of output lines left out of the .out files (manifest still counts them)."""
    corrupt_output_lines: float = 0.0
    """Fraction of output lines truncated to invalid JSON."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0

    def update(self, values: Mapping[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            for key, value in values.items():
                setattr(self, key, value)

    def reset(self) -> None:
        fresh = Faults()
        with self._lock:
            for f in dataclasses.fields(self):
                setattr(self, f.name, getattr(fresh, f.name))
            self._calls = 0

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # --- decisions ---------------------------------------------------------------------

    def should_throttle(self) -> bool:
        with self._lock:
            self._calls += 1
            if self.throttle_next_calls > 0:
                self.throttle_next_calls -= 1
                return True
            return hit(str(self._calls), self.throttle_rate, "throttle")

    def take_quota_exceeded(self) -> bool:
        with self._lock:
            if self.quota_exceeded_creates > 0:
                self.quota_exceeded_creates -= 1
                return True
            return False

    def job_fate(self, job_name: str) -> str | None:
        """ "Failed", "Expired", "PartiallyCompleted" or None for a job about to be created."""
        with self._lock:
            for fate, count_attr, names_attr in (
                ("Failed", "fail_jobs", "fail_job_names"),
                ("Expired", "expire_jobs", "expire_job_names"),
                ("PartiallyCompleted", "partial_jobs", "partial_job_names"),
            ):
                if any(s and s in job_name for s in getattr(self, names_attr)):
                    return fate
                count = getattr(self, count_attr)
                if count > 0:
                    setattr(self, count_attr, count - 1)
                    return fate
            return None

    # Record faults are drawn per (job, record): the same record in another job (a retry)
    # draws again, as a transient model error would; a text match fails every time.

    def record_fails(self, record_id: str, body_text: str, job_id: str = "") -> bool:
        needle = self.fail_text_containing
        if needle and needle in body_text:
            return True
        return hit(f"{job_id}:{record_id}", self.record_error_rate, "record")

    def drop_line(self, record_id: str, job_id: str = "") -> bool:
        return hit(f"{job_id}:{record_id}", self.drop_output_lines, "drop")

    def corrupt_line(self, record_id: str, job_id: str = "") -> bool:
        return hit(f"{job_id}:{record_id}", self.corrupt_output_lines, "corrupt")
