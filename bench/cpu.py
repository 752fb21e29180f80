"""CPU time of processes and of the whole machine over an interval, from /proc (Linux).

py-spy sees only Python frames; this also counts gRPC's native threads and the database, so
"CPU ms per step" per process says where the machine's two cores go.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["CpuMeter", "calibrate", "process_seconds", "process_tree"]

TICKS = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """CPU seconds a process's live threads have used; 0 if it is gone.

    /proc/PID/task/*/schedstat counts nanoseconds; utime + stime in /proc/PID/stat count
    10 ms ticks, too coarse for a Postgres backend that runs a few ms per second.
    """
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
    except OSError:
        return _stat_seconds(pid)
    return total or _stat_seconds(pid)


def _stat_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def calibrate(rounds: int = 5) -> float:
    """Milliseconds a fixed pure-Python loop takes here now (best of `rounds`).

    The same code then runs 30-40% slower at some times than at others on this VM while /proc
    shows no other load (the host's other tenants, presumably): a higher number than usual says
    the whole result is slow, not the code.
    """
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - t0)
    return round(1000 * best, 2)


def process_tree(root: int) -> list[int]:
    """`root` and its children (one level: enough for a postmaster and its backends)."""
    pids = [root]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == root:
            pids.append(int(stat.parent.name))
    return pids


def _machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, all cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / TICKS, total / TICKS


@dataclass
class CpuMeter:
    """Use as `with CpuMeter({"server": pid, ...}) as meter:`; read `seconds` afterwards.

    Reads /proc only at entry and exit, so it costs nothing while the workload runs.
    """

    pids: Mapping[str, int | Callable[[], list[int]]]
    """Role -> pid, or a function giving the pids of a group whose members come and go (the
    database server's backends): a member's CPU counts from its first sample on."""
    seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds per role, plus "client" (this process), "machine" (busy, all cores) and
    "other" (machine minus the named processes: whatever else runs on the machine)."""
    cores_busy: float = 0.0
    """Machine busy time / wall time: 2.0 means both cores were saturated."""
    _start: dict[str, dict[int, float]] = field(default_factory=dict)

    def _sample(self) -> dict[str, dict[int, float]]:
        sample: dict[str, dict[int, float]] = {}
        for role, pid in self.pids.items():
            members = [pid] if isinstance(pid, int) else pid()
            sample[role] = {p: process_seconds(p) for p in members}
        sample["client"] = {0: process_seconds(os.getpid())}
        busy, total = _machine_seconds()
        sample["machine"], sample["_total"] = {0: busy}, {0: total}
        return sample

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end = self._sample()
        delta = {
            role: sum(t - self._start[role].get(p, 0.0) for p, t in members.items()) for role, members in end.items()
        }
        wall = delta.pop("_total") / (os.cpu_count() or 1)
        self.seconds = delta
        self.seconds["other"] = delta["machine"] - sum(v for k, v in delta.items() if k != "machine")
        self.cores_busy = delta["machine"] / wall if wall > 0 else 0.0

    def per_step_ms(self, steps: int) -> dict[str, float]:
        """CPU milliseconds per step of each role."""
        return {role: round(1000 * s / steps, 3) for role, s in self.seconds.items()}
