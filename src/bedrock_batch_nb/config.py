"""Every option of a run, with its default, in one place.

:class:`RunConfig` is what the Python API, the magic and the form all fill in; the
README's option table mirrors it.  Bucket and role fall back to the environment
(``BEDROCK_BATCH_BUCKET`` / ``BEDROCK_BATCH_ROLE_ARN``), as ``local_bedrock()`` sets them.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from .errors import BatchInputError

# Limits from the facts file (Bedrock quotas); all overridable per run.
MIN_RECORDS_PER_JOB = 100
MAX_RECORDS_PER_JOB_LIMIT = 50_000
MAX_INPUT_FILE_BYTES = 1_000_000_000
FRAME_ROWS = 1_000_000
"""Text models' rows up to which ``wait()`` returns one DataFrame (``max_frame_rows``)..."""
FRAME_TEXT_CHARS = 1 << 30
"""... and the characters of their prompts up to which it does: 1,000,000 prompts of 1,000
characters make about 1 GB of text, of 20,000 (long documents) 20 GB, and the DataFrame
holds the rows the prompts were made of and the answers besides."""
FRAME_VECTOR_BYTES = 1 << 30
"""Embedding models' numbers up to which ``wait()`` returns one DataFrame: a 1,024-number
embedding takes 8 KiB as float64, where an answer of text takes about 1 KB, so 1,000,000
embeddings would make an 8 GB DataFrame."""

BUCKET_ENV = "BEDROCK_BATCH_BUCKET"
ROLE_ENV = "BEDROCK_BATCH_ROLE_ARN"

JOB_NAME_RE = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
JOB_NAME_MAX = 63
# A run id is "<prefix>-YYYYmmdd-HHMMSS-xxxx"; job names add "-NNNN".
RUN_ID_SUFFIX_LEN = len("-20260101-000000-abcd")
JOB_SUFFIX_LEN = len("-0001")
MAX_PREFIX_LEN = JOB_NAME_MAX - RUN_ID_SUFFIX_LEN - JOB_SUFFIX_LEN
ROLE_ARN_RE = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class RunConfig:
    """The options of one batch run.  See the README for the full table."""

    model_id: str
    prompt: str | None = None
    """Template with ``{column}`` placeholders (text models)."""
    prompt_id: str | None = None
    """Name of a registered template, instead of ``prompt``."""
    system_prompt: str | None = None
    max_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    input_text_column: str = "input_text"
    """Column that holds the text to embed (embedding models)."""
    dimensions: int = 1024
    normalize: bool = True
    invocation_type: Literal["InvokeModel", "Converse"] = "InvokeModel"
    job_name_prefix: str = "batch"
    max_records_per_job: int = 1000
    min_records_per_job: int = MIN_RECORDS_PER_JOB
    max_records_per_job_limit: int = MAX_RECORDS_PER_JOB_LIMIT
    max_input_file_bytes: int = MAX_INPUT_FILE_BYTES
    max_num_jobs: int | None = None
    max_concurrent_jobs: int = 10
    max_record_retries: int = 1
    """Passes that resubmit failed or missing records in new jobs (0: none)."""
    on_demand_fallback: bool = False
    """Retry failed records with on-demand calls when they are fewer than a job's minimum."""
    max_records_total: int | None = None
    max_frame_rows: int | None = None
    """Above this many rows, results stream to a Parquet file and ``wait()`` returns a
    ``pyarrow.dataset.Dataset`` over it instead of one DataFrame.  None: for text models
    1,000,000 rows, fewer when their prompts hold over ``FRAME_TEXT_CHARS`` characters
    (about 1 GB); for embedding models, as many rows as ``FRAME_VECTOR_BYTES`` of numbers
    hold (131,072 rows at 1,024 dimensions): see :meth:`frame_rows`."""
    bucket: str | None = None
    role_arn: str | None = None
    s3_prefix: str = "bedrock-batch"
    region: str | None = None
    timeout_hours: int | None = None
    poll_interval: float = 1.0
    """First delay between status polls, in seconds; grows while nothing changes."""
    max_poll_interval: float = 60.0
    kms_key_id: str | None = None
    s3_bucket_owner: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def frame_rows(self, embedding: bool, *, rows: int = 0, prompt_chars: int = 0) -> int:
        """Up to how many rows ``wait()`` returns one DataFrame (``max_frame_rows``): unset,
        for a text run of ``rows`` rows whose prompts hold ``prompt_chars`` characters in
        all, as many rows as ``FRAME_TEXT_CHARS`` of such prompts hold, ``FRAME_ROWS`` at
        most."""
        if self.max_frame_rows is not None:
            return self.max_frame_rows
        if embedding:  # 8 bytes a number, as float64
            return max(1, FRAME_VECTOR_BYTES // (8 * max(self.dimensions, 1)))
        if rows and prompt_chars > FRAME_TEXT_CHARS:
            return max(1, min(FRAME_ROWS, rows * FRAME_TEXT_CHARS // prompt_chars))
        return FRAME_ROWS

    def with_options(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    def resolved_bucket(self) -> str:
        bucket = self.bucket or os.environ.get(BUCKET_ENV)
        if not bucket:
            raise BatchInputError(
                f"No S3 bucket: pass bucket=... or set {BUCKET_ENV} "
                f"(and the job role: role_arn=... or {ROLE_ENV})."
            )
        return bucket

    def resolved_role_arn(self) -> str:
        role = self.role_arn or os.environ.get(ROLE_ENV)
        if not role:
            raise BatchInputError(
                f"No service role for the jobs: pass role_arn=... or set {ROLE_ENV} "
                f"(and the bucket: bucket=... or {BUCKET_ENV})."
            )
        return role

    def option_problems(self) -> list[str]:
        """Problems with the options themselves (not with the data)."""
        p: list[str] = []
        if self.prompt is not None and self.prompt_id is not None:
            p.append("Give either prompt=... or prompt_id=..., not both.")
        if (
            not JOB_NAME_RE.fullmatch(self.job_name_prefix)
            or len(self.job_name_prefix) > MAX_PREFIX_LEN
        ):
            p.append(
                f"job_name_prefix {self.job_name_prefix!r} must be 1-{MAX_PREFIX_LEN} characters "
                "of letters, digits and '-', starting with a letter or digit."
            )
        if self.min_records_per_job < 1:
            p.append("min_records_per_job must be at least 1.")
        if not self.min_records_per_job <= self.max_records_per_job_limit:
            p.append("min_records_per_job must not exceed max_records_per_job_limit.")
        if (
            not self.min_records_per_job
            <= self.max_records_per_job
            <= (self.max_records_per_job_limit)
        ):
            p.append(
                f"max_records_per_job={self.max_records_per_job} must be between the job "
                f"minimum ({self.min_records_per_job}) and maximum "
                f"({self.max_records_per_job_limit})."
            )
        if self.max_num_jobs is not None and self.max_num_jobs < 1:
            p.append("max_num_jobs must be at least 1 (or None for no cap).")
        if self.max_concurrent_jobs < 1:
            p.append("max_concurrent_jobs must be at least 1.")
        if self.max_record_retries < 0:
            p.append("max_record_retries must be 0 or more.")
        if self.max_frame_rows is not None and self.max_frame_rows < 0:
            p.append("max_frame_rows must be 0 or more (or None for the default).")
        if self.max_records_total is not None and self.max_records_total < 1:
            p.append("max_records_total must be at least 1 (or None for every row).")
        if self.max_tokens < 1:
            p.append("max_tokens must be at least 1.")
        if self.timeout_hours is not None and not 24 <= self.timeout_hours <= 168:
            p.append("timeout_hours must be between 24 and 168 (Bedrock's range).")
        if self.invocation_type not in ("InvokeModel", "Converse"):
            p.append("invocation_type must be 'InvokeModel' or 'Converse'.")
        if self.poll_interval <= 0 or self.max_poll_interval < self.poll_interval:
            p.append("poll_interval must be > 0 and not above max_poll_interval.")
        if self.max_input_file_bytes < 1024:
            p.append("max_input_file_bytes must be at least 1024.")
        if self.bucket is not None and not BUCKET_RE.fullmatch(self.bucket):
            p.append(f"bucket {self.bucket!r} is not a valid S3 bucket name.")
        if self.role_arn is not None and not ROLE_ARN_RE.fullmatch(self.role_arn):
            p.append(
                f"role_arn {self.role_arn!r} is not an IAM role ARN "
                "(arn:aws:iam::<account>:role/<name>)."
            )
        if self.s3_prefix.startswith("/") or "//" in self.s3_prefix:
            p.append("s3_prefix must be a relative key prefix such as 'bedrock-batch'.")
        return p


def option_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def check_option_names(options: Iterable[str]) -> None:
    """Raise :class:`BatchInputError` for every name in ``options`` that is not a
    :class:`RunConfig` field."""
    known = option_names()
    unknown = [unknown_option(name, known) for name in options if name not in known]
    if unknown:
        raise BatchInputError(unknown)


def unknown_option(name: str, known: list[str]) -> str:
    """What to say of an option ``name`` that is not one of ``known``: the closest known
    name when one is close (a typo), else the list."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if close:
        return f"Unknown option {name!r}: did you mean {close[0]!r}?"
    return f"Unknown option {name!r}. Options: {', '.join(known)}."
