"""Wall-clock timers patched around layers of the server and the worker, for `run.py --breakdown`.

A process that installs them resets its counters on SIGUSR1 and writes them as JSON to
$BENCH_TIMINGS_OUT on SIGUSR2, so the bench can time just the measured part of a workload.
Only the bench's own launchers (`bench.server_main`, `bench.worker --timings`) install them.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["install_signal_handlers", "time_async", "time_methods", "time_sync"]

_lock = threading.Lock()
_totals: dict[str, list[float]] = {}  # label -> [calls, seconds]


def _record(label: str, seconds: float) -> None:
    with _lock:
        entry = _totals.setdefault(label, [0, 0.0])
        entry[0] += 1
        entry[1] += seconds


def time_async(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a coroutine function so each call's wall time is added to `label`."""

    @functools.wraps(fn)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            _record(label, time.perf_counter() - t0)

    return timed


def time_sync(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a plain function (e.g. one that runs on a store thread)."""

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(label, time.perf_counter() - t0)

    return timed


def time_methods(cls: type, prefix: str, names: list[str] | None = None) -> None:
    """Time the public coroutine methods of a class, inherited ones too (or the named ones)."""
    done: set[str] = set()
    for klass in cls.__mro__[:-1]:
        for name, fn in list(vars(klass).items()):
            wanted = not name.startswith("_") if names is None else name in names
            if wanted and name not in done and inspect.iscoroutinefunction(fn):
                setattr(cls, name, time_async(f"{prefix}.{name}", fn))
                done.add(name)


def _reset(*_: object) -> None:
    with _lock:
        _totals.clear()


def _dump(*_: object) -> None:
    with _lock:
        data = {label: {"calls": int(c), "total_s": s} for label, (c, s) in sorted(_totals.items())}
    out = Path(os.environ["BENCH_TIMINGS_OUT"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(out)  # the bench waits for the file to appear: write it whole


def install_signal_handlers() -> None:
    """SIGUSR1 resets the counters, SIGUSR2 writes them to $BENCH_TIMINGS_OUT."""
    signal.signal(signal.SIGUSR1, _reset)
    signal.signal(signal.SIGUSR2, _dump)
