"""How long ``run.start()`` holds the caller after ``run.preview(3)`` of a big file.

A preview of a CSV or JSONL file over 64 MiB reads only its start; ``start()`` must then
return at once and leave the download and conversion to the run's thread::

    .venv/bin/python benchmarks/start_after_preview.py /tmp/bench-data/simplecot-v1-2200000.csv

(``benchmarks/cases.py generate simplecot-csv 2200000 --data-dir /tmp/bench-data`` makes
that file.)  Prints one JSON line; the run is stopped once ``start()`` has returned.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator

from bedrock_batch_nb import BatchRun
from bedrock_batch_nb.local import LocalBedrock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a CSV or JSONL file with source and rationale columns")
    args = parser.parse_args()
    with emulated():
        run = BatchRun(
            args.path,
            "anthropic.claude-3-haiku-20240307-v1:0",
            "{source}\n\nExplain: {rationale}",
        )
        began = time.perf_counter()
        run.preview(3)
        previewed = time.perf_counter()
        run.start()
        started = time.perf_counter()
        stop(run)
    report(args.path, preview_s=previewed - began, start_s=started - previewed)


@contextlib.contextmanager
def emulated() -> Iterator[None]:
    """The emulator, reached through the environment, for as long as the block runs."""
    aws = LocalBedrock().start()
    os.environ.update(aws.env)
    try:
        yield
    finally:
        aws.stop()


def stop(run: BatchRun) -> None:
    """Stop the run once what is timed is over, and let it end (not measured)."""
    run.stop()
    try:
        run.wait(timeout=600)
    except Exception as exc:  # (a stopped run may end either way)
        print(f"# the stopped run ended with {type(exc).__name__}")


def report(path: str, **seconds: float) -> None:
    """The one JSON line: the file's size and the times measured."""
    figures = {name: round(value, 3) for name, value in seconds.items()}
    print(json.dumps({"file_mib": round(os.path.getsize(path) / 2**20), **figures}))


if __name__ == "__main__":
    main()
