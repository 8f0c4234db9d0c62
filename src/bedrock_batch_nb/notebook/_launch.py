"""What the magic and the form check in the foreground before they start a run."""

from __future__ import annotations

from ..run import BatchRun

ROWS_CHECKED_IN_THE_CELL = 50_000
"""Up to this many rows (one job's worth at most, about 0.1 s to read), every row is
checked before the run starts, so that a problem is an error in the cell or the form
itself.  Beyond it, and for data whose size is not known until it is read whole (a big
CSV or JSONL file, an ``s3://`` object over 64 MiB), the rows are checked in the
background as the run's first step, before anything is staged or submitted: reading
200,000 rows held the kernel for 0.3-0.4 s, 2.2 million for 2.5-6 s, and a large file on
S3 for its download."""


def check_before_start(run: BatchRun) -> None:
    """Raise :class:`~bedrock_batch_nb.errors.BatchInputError` for what is wrong with
    ``run`` that can be found without holding the kernel up: options, model, parameters,
    template, columns, bucket and role; and every row, for a small dataset."""
    rows = run.source.counted_rows
    if rows is not None and rows <= ROWS_CHECKED_IN_THE_CELL:
        run.validate()
    else:
        run.check_setup()
    run.config.resolved_bucket()
    run.config.resolved_role_arn()
