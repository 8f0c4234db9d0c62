"""What the magic and the form do in the foreground before a run starts: check it, and
run the garbage collection their imports made due."""

from __future__ import annotations

import gc

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


def collect_what_imports_left() -> None:
    """Run the full garbage collection that the imports behind the magic or the form have
    made due, now, in the cell that loads them.

    Python's cyclic garbage collector scans every object in the process in a full
    collection, holding the GIL throughout, and runs one once enough objects have been
    created since the last.  A fresh kernel with this package loaded holds about 160,000
    objects that none has scanned, so the next allocation-heavy code paid for it: the
    first run's background thread, 90 ms in which the kernel's event loop could not run.
    Here the pause falls beside the imports' second or so."""
    gc.collect()
