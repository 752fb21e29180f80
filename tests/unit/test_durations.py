from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmo.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        ("45", timedelta(seconds=45)),
        ("1.5h", timedelta(minutes=90)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_parses_short_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "d", "30x", "1h 30m", "h1", "30d!", "-5d", "-5", "nan"])
def test_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(0, 10_000), st.integers(0, 23), st.integers(0, 59))
def test_days_hours_minutes_add_up(days: int, hours: int, minutes: int) -> None:
    assert parse_duration(f"{days}d{hours}h{minutes}m") == timedelta(days=days, hours=hours, minutes=minutes)


@pytest.mark.parametrize("text", ["30", "0", "1.5"])
def test_a_plain_number_is_refused_where_a_unit_is_required(text: str) -> None:
    with pytest.raises(ValueError, match="add a unit, as in 30d, 12h, 90m or 45s"):
        parse_duration(text, unit_required=True)
    assert parse_duration("30d", unit_required=True) == timedelta(days=30)
