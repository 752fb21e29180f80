"""What a step's next attempt replays from its records, and what it runs again."""

from __future__ import annotations

import cmo
from cmo._activity import replayed_records
from cmo.api.v1 import common_pb2
from cmo.errors import HttpStatusError


def ok(seq: int, attempt: int, kind: str = "call") -> common_pb2.Activity:
    return common_pb2.Activity(seq=seq, kind=kind, name=f"a{seq}", request_hash="h", result=b"1", attempt=attempt)


def failed(seq: int, attempt: int, kind: str = "call", error: str = "ConnectionError") -> common_pb2.Activity:
    record = common_pb2.Activity(seq=seq, kind=kind, name=f"a{seq}", request_hash="h", attempt=attempt)
    record.error.CopyFrom(common_pb2.Failure(message="down", type=error))
    return record


def test_a_node_retry_replays_recorded_successes_and_runs_failures_of_earlier_attempts_again():
    records = [ok(0, 1), failed(1, 1), ok(2, 2), failed(3, 2)]
    assert sorted(replayed_records(records, attempt=3)) == [0, 2]
    # Replaying the attempt that made the records (a finished history) returns them all.
    assert sorted(replayed_records(records, attempt=2)) == [0, 2, 3]


def test_an_attempt_that_ended_in_a_wait_is_replayed_whole_failures_included():
    records = [failed(0, 1), ok(1, 1, kind="timer"), failed(2, 2)]
    assert sorted(replayed_records(records, attempt=3)) == [0, 1]


def test_outcomes_of_waits_and_cancellations_are_facts_always_replayed():
    records = [
        failed(0, 1, kind="signal", error="SignalTimeoutError"),
        failed(1, 2, kind="call", error="RunCancelledError"),
    ]
    assert sorted(replayed_records(records, attempt=3)) == [0, 1]


def test_an_http_status_error_is_rebuilt_from_its_recorded_message():
    url = "http://127.0.0.1:8080/a:b/c"
    error = HttpStatusError("http.POST", 4, method="POST", url=url, status=503, body="busy: try later")
    assert isinstance(error, cmo.errors.ActivityError)
    assert error.message == f"POST {url} answered 503: busy: try later"

    rebuilt = HttpStatusError.from_message("http.POST", 4, error.message)

    assert rebuilt is not None
    assert (rebuilt.method, rebuilt.url, rebuilt.status, rebuilt.body) == ("POST", url, 503, "busy: try later")
    assert str(rebuilt) == str(error)
    assert HttpStatusError.from_message("http.POST", 4, "something else") is None
    no_body = HttpStatusError("http.GET", 0, method="GET", url=url, status=500, body="")
    rebuilt_without_body = HttpStatusError.from_message("http.GET", 0, no_body.message)
    assert rebuilt_without_body is not None
    assert rebuilt_without_body.body == ""
