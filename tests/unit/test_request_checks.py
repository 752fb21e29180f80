"""The API's field checks as pure functions: durations at their bounds, NUL characters, echoed values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration

from cmo.api.v1 import common_pb2, worker_service_pb2
from cmo_server.api._validate import check_duration, nul_field
from cmo_server.errors import InvalidArgument, shown

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


def test_nul_field_names_the_first_string_holding_a_nul_at_any_depth() -> None:
    clean = worker_service_pb2.FailTaskRequest(task_token="t", failure=common_pb2.Failure(message="m"))
    assert nul_field(clean) is None
    assert nul_field(worker_service_pb2.FailTaskRequest(task_token="t\x00")) == "task_token"
    nested = worker_service_pb2.FailTaskRequest(
        failure=common_pb2.Failure(message="m"),
        activities=[common_pb2.Activity(name="a"), common_pb2.Activity(error=common_pb2.Failure(details="\x00"))],
    )
    assert nul_field(nested) == "activities[1].error.details"
    graph = common_pb2.GraphDef(
        nodes=[common_pb2.NodeDef(retry=common_pb2.RetryPolicy(non_retryable_errors=["A", "\x00"]))]
    )
    assert nul_field(graph, "graph.") == "graph.nodes[0].retry.non_retryable_errors[1]"
    # Bytes may hold anything: only strings are text.
    assert nul_field(worker_service_pb2.CompleteTaskRequest(state=b"\x00")) is None


def test_nul_field_walks_maps_too() -> None:
    task = common_pb2.Task(trace_context={"traceparent": "00-\x00"})
    assert nul_field(task) == "trace_context"
    assert nul_field(common_pb2.Task(trace_context={"k\x00": "v"})) == "trace_context"
    assert nul_field(common_pb2.Task(trace_context={"k": "v"})) is None


def test_shown_echoes_a_short_value_whole_and_cuts_a_long_one_telling_its_length() -> None:
    assert shown("node-a") == "'node-a'"
    long = shown("x" * 20_000)
    assert long.startswith("'xxxx")
    assert long.endswith("... (20000 characters)")
    assert len(long) < 100
    assert len(shown(["k" * 128] * 10_000)) < 100
