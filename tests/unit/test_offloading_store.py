import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cmo_server.blob import FilesystemBlobStore
from cmo_server.store import (
    ActivityStore,
    ArtifactStore,
    GraphStore,
    MetricsStore,
    OffloadingStore,
    RetentionStore,
    RunStore,
    Store,
    TaskStore,
    WaitStore,
)
from cmo_server.store._offloading import PAYLOAD_PROTOCOLS


def protocol_methods(protocol: type) -> dict[str, Callable[..., object]]:
    """The coroutine methods a store protocol declares, its bases' included."""
    return {
        name: member
        for name, member in inspect.getmembers(protocol)
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }


def payload_methods() -> dict[str, Callable[..., object]]:
    return {name: m for protocol in PAYLOAD_PROTOCOLS for name, m in protocol_methods(protocol).items()}


def delegated_methods() -> list[str]:
    return sorted(set(protocol_methods(Store)) - set(payload_methods()))


class RecordingStore:
    """An inner store that answers every call with its name and remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> str:
            self.calls.append((name, args, kwargs))
            return f"{name} answered"

        return call


def test_the_payload_protocols_are_those_whose_calls_carry_payloads():
    assert set(PAYLOAD_PROTOCOLS) == {RunStore, TaskStore, ActivityStore, WaitStore}


def test_the_wrapper_defines_every_payload_method_itself_with_the_same_signature():
    # A payload method added later must be handled here explicitly: delegated as it is, it would
    # hand the engine packed manifests, or store large payloads inline.
    methods = payload_methods()
    assert methods, "the payload protocols have no methods?"
    missing = sorted(set(methods) - set(vars(OffloadingStore)))
    assert missing == [], f"OffloadingStore does not define {missing}"
    for name, method in methods.items():
        assert inspect.signature(vars(OffloadingStore)[name]) == inspect.signature(method), name


def test_the_delegated_methods_cover_the_protocols_without_payloads():
    delegated = set(delegated_methods())
    for protocol in (GraphStore, ArtifactStore, MetricsStore, RetentionStore):
        assert set(protocol_methods(protocol)) <= delegated, protocol.__name__
    assert {"aclose", "ping", "watch"} <= delegated


@pytest.mark.parametrize("name", delegated_methods())
async def test_a_call_without_payloads_reaches_the_inner_store_as_it_is(name: str, tmp_path: Path):
    inner = RecordingStore()
    async with FilesystemBlobStore(tmp_path) as blobs:
        store = OffloadingStore(inner, blobs, threshold=0)
        answer = await getattr(store, name)("positional", keyword="value")

    assert answer == f"{name} answered"
    assert inner.calls == [(name, ("positional",), {"keyword": "value"})]


def test_a_name_no_protocol_declares_is_not_looked_up_on_the_inner_store(tmp_path: Path):
    inner = RecordingStore()
    store = OffloadingStore(inner, FilesystemBlobStore(tmp_path), threshold=0)

    with pytest.raises(AttributeError, match="no_such_method"):
        store.no_such_method  # noqa: B018

    assert inner.calls == []
