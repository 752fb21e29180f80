from datetime import timedelta

import pytest

from cmo_server.config import ConfigError, ServerConfig
from cmo_server.domain import END_NODE, GraphSpec, NodeSpec, RetrySpec
from cmo_server.engine._payloads import canonical_payload
from cmo_server.errors import InvalidArgument, ResourceExhausted


def test_retry_delays_grow_and_are_capped():
    retry = RetrySpec(initial_interval=timedelta(seconds=1), backoff=2, max_interval=timedelta(seconds=3))
    assert [retry.delay_after(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 3, 3]


def test_retry_budget_and_non_retryable_errors():
    retry = RetrySpec(max_attempts=3, non_retryable_errors=("KeyError",))
    assert retry.allows_another(1, "ValueError", non_retryable=False)
    assert retry.allows_another(2, "ValueError", non_retryable=False)
    assert not retry.allows_another(3, "ValueError", non_retryable=False)
    assert not retry.allows_another(1, "KeyError", non_retryable=False)
    assert not retry.allows_another(1, "ValueError", non_retryable=True)
    assert RetrySpec(max_attempts=0).allows_another(1000, "X", non_retryable=False)


def test_graph_spec_json_round_trip_and_resolution():
    graph = GraphSpec(
        "g",
        3,
        "a",
        {"a": NodeSpec("a", "q", RetrySpec(max_attempts=7)), "b": NodeSpec("b")},
        {("a", "go"): "b", ("b", "stop"): END_NODE},
    )
    assert GraphSpec.from_json(graph.to_json()) == graph
    assert graph.definition_json() == GraphSpec.from_json(graph.to_json()).definition_json()
    assert graph.next_node("a", "go") == "b"
    assert graph.next_node("a", END_NODE) == END_NODE
    assert graph.next_node("a", "nope") is None


def test_payload_validation_names_the_field():
    assert canonical_payload("state", b'{ "b": 1, "a": 2 }', 100, object_only=True) == b'{"a":2,"b":1}'
    with pytest.raises(InvalidArgument, match=r"^state: is not valid"):
        canonical_payload("state", b"{nope", 100)
    with pytest.raises(InvalidArgument, match="must be a JSON object"):
        canonical_payload("input", b"[1]", 100, object_only=True)
    with pytest.raises(ResourceExhausted, match=r"^output: 101 bytes"):
        canonical_payload("output", b"1" * 101, 100)


def test_config_from_env_names_the_bad_variable_and_redacts():
    config = ServerConfig.from_env({"CMO_DATABASE_URL": "postgresql://u:secret@h/db", "CMO_TASK_LEASE_SECONDS": "2.5"})
    assert config.limits.task_lease == timedelta(seconds=2.5)
    assert "secret" not in str(config.redacted())
    with pytest.raises(ConfigError, match="CMO_POOL_SIZE"):
        ServerConfig.from_env({"CMO_POOL_SIZE": "many"})
    with pytest.raises(ConfigError, match="CMO_LISTEN"):
        ServerConfig.from_env({"CMO_LISTEN": "nowhere"})
    with pytest.raises(ConfigError, match="CMO_TASK_LEASE_SECONDS"):
        ServerConfig.from_env({"CMO_TASK_LEASE_SECONDS": "-1"})
    assert ServerConfig.from_env({"CMO_LISTEN": "0.0.0.0:1"}).listen == "0.0.0.0:1"


def test_a_wait_over_before_it_starts_and_a_wait_ended_record_the_right_outcome():
    from datetime import timedelta

    from cmo_server.domain import CANCELLED_ERROR, SIGNAL_TIMEOUT_ERROR, TIMER_FIRED, Failure, WaitRequest

    timer = WaitRequest(seq=2, kind="timer", name="", duration=timedelta(0), request_hash="h")
    signal = WaitRequest(seq=3, kind="signal", name="go", duration=None, request_hash="s")
    fired = timer.outcome_before_start(attempt=1, cancel_reason=None)
    assert fired is not None
    assert fired.result == TIMER_FIRED
    assert signal.outcome_before_start(attempt=1, cancel_reason=None) is None
    cancelled = signal.outcome_before_start(attempt=4, cancel_reason="stop")
    assert cancelled is not None
    assert (cancelled.seq, cancelled.attempt) == (3, 4)
    assert cancelled.error is not None
    assert (cancelled.error.type, cancelled.error.message) == (CANCELLED_ERROR, "stop")
    assert timer.ended(attempt=1).result == TIMER_FIRED
    timed_out = signal.ended(attempt=1).error
    assert timed_out is not None
    assert timed_out.type == SIGNAL_TIMEOUT_ERROR
    stop = Failure(message="x", type=CANCELLED_ERROR, non_retryable=True)
    assert timer.ended(attempt=1, failure=stop).error == stop
