"""The API's field checks as pure functions: durations at their bounds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration

from cmo_server.api._validate import check_duration
from cmo_server.errors import InvalidArgument

MAXIMUM = timedelta(seconds=60)


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (0, 0, timedelta(0)),
        (0, 999_999_999, timedelta(microseconds=999_999)),  # timedelta keeps microseconds
        (60, 0, MAXIMUM),
        (59, 999_999_999, timedelta(seconds=59, microseconds=999_999)),
    ],
)
def test_a_duration_within_its_bounds_is_its_timedelta(seconds: int, nanos: int, expected: timedelta) -> None:
    assert check_duration("wait", Duration(seconds=seconds, nanos=nanos), maximum=MAXIMUM) == expected


@pytest.mark.parametrize(
    ("seconds", "nanos", "reason"),
    [
        (60, 1000, "at most 60s"),
        (61, 0, "at most 60s"),
        (2**62, 0, "at most 60s"),
        (2**63 - 1, 999_999_999, "at most 60s"),
        (-(2**63), 0, "non-negative"),
        (-1, 0, "non-negative"),
        (0, -1, "non-negative"),
        (1, -5, "same sign"),
        (-1, 5, "same sign"),
        (0, 1_000_000_000, "nanos must be between"),
        (0, -1_000_000_000, "nanos must be between"),
        (0, 2**31 - 1, "nanos must be between"),
    ],
)
def test_a_duration_out_of_bounds_or_not_normalised_names_the_field(seconds: int, nanos: int, reason: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_duration("wait", Duration(seconds=seconds, nanos=nanos), maximum=MAXIMUM)
    assert raised.value.field == "wait"
    assert reason in raised.value.reason
