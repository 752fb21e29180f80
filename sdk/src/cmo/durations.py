"""Durations written the short way, as retention settings and `cmoctl runs prune` take them."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str, *, unit_required: bool = False) -> timedelta:
    """A duration such as "30d", "12h", "1h30m", "90s" or "2w" (plain seconds also: "45").

    Args:
        text: The duration.
        unit_required: Refuse a plain number: where a mistake deletes data, "30" is more likely
            meant as 30 days than as 30 seconds.

    Raises:
        ValueError: the text is not such a duration (the message shows it).
    """
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError("a duration must not be empty (examples: 30d, 12h, 1h30m)")
    try:
        plain = float(cleaned)
    except ValueError:
        pass
    else:
        if plain < 0 or plain != plain:  # negative, or NaN
            raise ValueError(f"{text!r} is not a duration: it must be 0 or more")
        if unit_required:
            raise ValueError(f"{text!r} has no unit: add a unit, as in 30d, 12h, 90m or 45s")
        return timedelta(seconds=plain)
    position, seconds = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(cleaned) or position == 0:
        raise ValueError(f"{text!r} is not a duration (examples: 30d, 12h, 1h30m, 90s)")
    return timedelta(seconds=seconds)
