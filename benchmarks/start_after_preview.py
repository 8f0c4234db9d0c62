"""How long ``run.start()`` holds the caller after ``run.preview(3)`` of a big file.

A preview of a CSV or JSONL file over 64 MiB reads only its start; ``start()`` must then
return at once and leave the download and conversion to the run's thread::

    .venv/bin/python benchmarks/start_after_preview.py /tmp/bench-data/simplecot-v1-2200000.csv

(``benchmarks/cases.py generate simplecot-csv 2200000 --data-dir /tmp/bench-data`` makes
that file.)  Prints one JSON line; the run is stopped once ``start()`` has returned.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bedrock_batch_nb import BatchRun
from bedrock_batch_nb.local import LocalBedrock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a CSV or JSONL file with source and rationale columns")
    args = parser.parse_args()
    aws = LocalBedrock().start()
    os.environ.update(aws.env)
    try:
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
        run.stop()
        try:
            run.wait(timeout=600)
        except Exception as exc:  # (a stopped run may end either way; not measured)
            print(f"# the stopped run ended with {type(exc).__name__}")
    finally:
        aws.stop()
    print(
        json.dumps(
            {
                "file_mib": round(os.path.getsize(args.path) / 2**20),
                "preview_s": round(previewed - began, 3),
                "start_s": round(started - previewed, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
