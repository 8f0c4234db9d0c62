"""How long the ``%%bedrock_batch`` cell holds the notebook when it names a big file.

The cell checks what needs no rows, starts the run and returns; a dataset over
``ROWS_CHECKED_IN_THE_CELL`` rows (or of a size not known before it is read) has its rows
checked on the run's thread::

    .venv/bin/python benchmarks/magic_cell.py /tmp/bench-data/simplecot-v1-2200000.parquet
    .venv/bin/python benchmarks/magic_cell.py --s3 /tmp/bench-data/simplecot-v1-2200000.csv

(``benchmarks/cases.py generate simplecot[-csv] 2200000 --data-dir /tmp/bench-data`` makes
such files.)  A real IPython ``InteractiveShell`` runs the cell against the emulator;
prints one JSON line; the run is stopped once the cell has returned.
"""

from __future__ import annotations

import argparse
import os
import time

import boto3
from IPython.core.interactiveshell import InteractiveShell
from start_after_preview import emulated, report, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a Parquet, CSV or JSONL file with a source column")
    parser.add_argument(
        "--s3", action="store_true", help="upload it to the emulator's S3 first (not timed)"
    )
    args = parser.parse_args()
    with emulated():
        data = args.path
        if args.s3:
            bucket, key = os.environ["BEDROCK_BATCH_BUCKET"], f"data/{os.path.basename(data)}"
            boto3.client("s3").upload_file(data, bucket, key)
            data = f"s3://{bucket}/{key}"
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "bedrock_batch_nb")
        line = (
            f"{data} --model anthropic.claude-3-haiku-20240307-v1:0 --out answers --quiet "
            "--records-per-job 50000"
        )
        began = time.perf_counter()
        shell.run_cell_magic("bedrock_batch", line, "{source}\n\nExplain.")
        returned = time.perf_counter()
        stop(shell.user_ns["answers_run"])
    report(args.path, cell_s=returned - began)


if __name__ == "__main__":
    main()
