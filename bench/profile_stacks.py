"""Summarise py-spy raw stacks from `run.py --profile DIR`: where the CPU goes, per step.

    uv run python bench/profile_stacks.py DIR/sqlite-W3 [--top 25]

Reads `server.txt`, `worker.txt` (py-spy `--format raw`: `frame;frame;... count`) and
`result.json` (the workload's JSON line, for the number of steps) and prints, per process,
the functions with the most self and inclusive samples as CPU ms per step. py-spy samples only
threads that are running Python, so native gRPC threads are missing here: compare with
`cpu_ms_per_step` in the JSON line, measured from /proc.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
RATE = 250  # must match `processes.py_spy(rate=...)`


def frame_name(frame: str) -> str:
    """`func (path/file.py:123)` -> `func (path/file.py)`: one entry per function, not per line."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def load(path: Path) -> list[tuple[list[str], int]]:
    """Stacks (root first) and their sample counts."""
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append(([frame_name(f) for f in frames.split(";")], int(count)))
    return stacks


def summarise(stacks: list[tuple[list[str], int]], steps: int, top: int) -> str:
    total = sum(c for _, c in stacks)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def ms(samples: int) -> str:
        return f"{1000 * samples / RATE / steps:7.3f}"

    lines = [f"  {total} samples = {1000 * total / RATE / steps:.3f} CPU ms per step (Python frames only)"]
    lines.append("  -- self (ms/step, share) --")
    for name, count in own.most_common(top):
        lines.append(f"  {ms(count)} {100 * count / total:5.1f}%  {name}")
    lines.append("  -- inclusive (ms/step, share) --")
    for name, count in inclusive.most_common(top):
        lines.append(f"  {ms(count)} {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    result = json.loads((args.directory / "result.json").read_text())
    steps = result["n"] * result["steps_per_run"]
    print(
        f"{result['backend']} {result['workload']}: {steps} steps; /proc CPU ms per step: {result['cpu_ms_per_step']}"
    )
    for role in ("server", "worker", "server_on", "worker_on"):  # the last two: W1P's second arm
        path = args.directory / f"{role}.txt"
        if path.exists():
            print(f"{role}:")
            print(summarise(load(path), steps, args.top))


if __name__ == "__main__":
    main()
