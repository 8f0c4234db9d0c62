"""What blocks an asyncio loop, recorded from inside the process (standard library only,
so that ``kernel_lag`` can load it into the kernel it measures): the garbage collector's
pauses, and with ``--trace-stalls`` every thread's stack during a stall."""

from __future__ import annotations

import faulthandler
import gc
import math
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TICK_S = 0.010
"""How long the lag cases' watching coroutine sleeps at a time; each sample is how much
later than that it woke (``cases.background_run``, ``cases.KERNEL_SETUP``)."""


class GcPauses:
    """The garbage collector's full collections, and any collection over 20 ms, each as
    (monotonic start, seconds, generation, thread): it holds the GIL throughout, so the
    loop waits for it."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int, str]] = []
        self._start = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._hook)

    def _hook(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.monotonic()  # (collections hold the GIL: they never overlap)
            return
        took = time.monotonic() - self._start
        if info["generation"] == 2 or took > 0.02:
            name = threading.current_thread().name
            self.pauses.append((self._start, took, info["generation"], name))


class StallTracer:
    """``--trace-stalls``: faulthandler's watchdog, re-armed at every tick of the loop,
    dumps every thread's Python stack when the next tick is ``threshold`` seconds late.
    The watchdog is a C thread that needs no GIL, so the dump is taken during the stall,
    whichever thread holds the GIL then (a Python watchdog thread would wait for it, and
    see the stacks only once the stall is over)."""

    def __init__(self, threshold: float, tick: float) -> None:
        self.enabled = math.isfinite(threshold)
        self.timeout = tick + threshold
        self.stalls: list[dict[str, Any]] = []
        # (closed by __exit__; none when not tracing)
        self._dumps = tempfile.TemporaryFile() if self.enabled else None  # noqa: SIM115
        self._read = 0
        self._taken: list[tuple[float, int, int, dict[int | None, str]]] = []

    def __enter__(self) -> StallTracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._dumps is not None:
            self._dumps.close()

    def beat(self, late: float) -> None:
        """A tick came ``late`` seconds late: keep the dump of its stall, if one was
        taken (parsed in :meth:`stop`, off the loop's time), and re-arm the watchdog."""
        if self._dumps is None:
            return
        faulthandler.cancel_dump_traceback_later()
        fd = self._dumps.fileno()
        size = os.fstat(fd).st_size
        if size > self._read:
            names = {t.ident: t.name for t in threading.enumerate()}
            self._taken.append((late, self._read, size, names))
            self._read = size
        faulthandler.dump_traceback_later(self.timeout, file=fd)

    def stop(self) -> None:
        if self._dumps is None:
            return
        faulthandler.cancel_dump_traceback_later()
        fd = self._dumps.fileno()
        for late, start, end, names in self._taken:
            text = os.pread(fd, end - start, start).decode(errors="replace")
            self.stalls.append({"late_ms": round(late * 1000, 1), "stacks": _stacks(text, names)})
        self._taken.clear()


def threshold_s(ms: float | None) -> float:
    """``--trace-stalls MS`` as :class:`StallTracer`'s threshold in seconds (infinite,
    tracing nothing, when not given)."""
    return (ms or math.inf) / 1000


def _stacks(dump: str, names: dict[int | None, str]) -> dict[str, list[str]]:
    """faulthandler's dump as {thread name: its five innermost frames, outermost first}."""
    stacks: dict[str, list[str]] = {}
    frames: list[str] = []
    for line in dump.splitlines():
        thread = re.match(r"(?:Current thread|Thread) (0x[0-9a-f]+)", line)
        if thread:
            ident = int(thread.group(1), 16)
            frames = stacks.setdefault(names.get(ident, thread.group(1)), [])
            continue
        frame = re.match(r'\s+File "(.*)", line (\d+) in (.*)', line)
        if frame and len(frames) < 5:
            frames.insert(0, f"{Path(frame.group(1)).name}:{frame.group(2)} {frame.group(3)}")
    return stacks
