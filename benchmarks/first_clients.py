"""How long a process's first run holds the event loop while it creates its AWS clients.

A run creates its boto3 clients on its own thread.  In a fresh process botocore then
parses their service models and endpoint rules (JSON, holding the GIL); ``%load_ext
bedrock_batch_nb`` parses them beforehand (``aws.load_client_models``)::

    .venv/bin/python benchmarks/first_clients.py --repeats 5

Each repeat is two fresh processes, one without and one after ``load_client_models``: an
asyncio loop sleeps 10 ms at a time while a thread does what a run's thread does first
(``Clients.create()``), and the loop's longest wait beyond its 10 ms is recorded.  Prints
one JSON line per process, then the medians.  No request is made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from stalls import TICK_S


async def _watch(work: threading.Thread, finished: threading.Event) -> dict[str, float]:
    waits: list[float] = []
    await asyncio.sleep(0.05)
    begin = time.perf_counter()
    work.start()
    while not finished.is_set():
        slept = time.perf_counter()
        await asyncio.sleep(TICK_S)
        waits.append(time.perf_counter() - slept - TICK_S)
    return {
        "create_s": round(time.perf_counter() - begin, 3),
        "loop_max_wait_ms": round(max(waits, default=0.0) * 1000, 1),
    }


def measure(parsed_first: bool) -> dict[str, Any]:
    """One process's figures (``parsed_first``: ``load_client_models`` before the run)."""
    os.environ.update(
        {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    )
    from bedrock_batch_nb.aws import Clients, load_client_models

    figures: dict[str, Any] = {"parsed_first": parsed_first}
    if parsed_first:
        began = time.perf_counter()
        load_client_models()
        figures["load_client_models_s"] = round(time.perf_counter() - began, 3)
    finished = threading.Event()
    work = threading.Thread(target=lambda: (Clients.create(), finished.set()))
    figures.update(asyncio.run(_watch(work, finished)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["cold", "parsed"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child == "parsed")))
        return
    seen: dict[str, list[float]] = {"cold": [], "parsed": []}
    for _ in range(args.repeats):
        for kind in seen:
            argv = [sys.executable, __file__, "--child", kind]
            line = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            print(line.strip())
            seen[kind].append(json.loads(line)["loop_max_wait_ms"])
    for kind, waits in seen.items():
        print(
            f"{kind}: the loop's longest wait, median {statistics.median(waits):.1f} ms "
            f"({min(waits):.1f}-{max(waits):.1f}) over {len(waits)} processes"
        )


if __name__ == "__main__":
    main()
