"""Which run asked an agent what: a request recorded as a step's activity is found by its message id."""

from __future__ import annotations

from cmo.a2a.invoke import KIND_REQUEST, request_name
from cmo_server.domain import ActivityRecord, Namespace
from cmo_server.store import Store
from tests.integration.contract.helpers import NS, chain_graph, claim, start_run, unique


async def test_a_recorded_request_is_found_by_its_message_id_in_its_namespace_only(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    message_id = unique("m").ljust(64, "0")
    request = ActivityRecord(0, KIND_REQUEST, request_name(message_id), "h", b'"sent"', None, task.attempt)
    await store.record_activity(task.key, request)
    assert await store.run_of_request(NS, message_id) == run_id
    assert await store.run_of_request(Namespace("other", "p"), message_id) is None
    assert await store.run_of_request(NS, "0" * 64) is None
    # Another kind of activity with that name is not a request.
    other = ActivityRecord(1, "call", request_name("f" * 64), "h", b"1", None, task.attempt)
    await store.record_activity(task.key, other)
    assert await store.run_of_request(NS, "f" * 64) is None
