"""``python -m bedrock_batch_nb.local [--port N] [--s3-port N]``: serve until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import threading

from .emulator import LocalBedrock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bedrock_batch_nb.local",
        description="Serve a local Amazon Bedrock (batch jobs, runtime) and S3 (moto).",
    )
    parser.add_argument("--port", type=int, default=0, help="Bedrock port (default: free port)")
    parser.add_argument("--s3-port", type=int, default=0, help="S3 port (default: free port)")
    parser.add_argument("--quota", type=int, default=None, help="concurrent jobs per model")
    args = parser.parse_args(argv)
    with LocalBedrock(port=args.port, s3_port=args.s3_port, quota=args.quota) as lb:
        for key, value in lb.env.items():
            print(f"export {key}={shlex.quote(value)}", flush=True)
        print("# serving; press Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
