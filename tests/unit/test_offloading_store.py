import inspect
from collections.abc import Callable

from cmo_server.store import OffloadingStore, Store


def protocol_methods() -> dict[str, Callable[..., object]]:
    return {
        name: member
        for name, member in vars(Store).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }


def test_the_wrapper_defines_every_store_method_itself_with_the_same_signature():
    # A Store method added later must be handled here explicitly: one carrying payloads would
    # otherwise hand the engine packed manifests, or store large payloads inline.
    methods = protocol_methods()
    assert methods, "the protocol has no methods?"
    missing = sorted(set(methods) - set(vars(OffloadingStore)))
    assert missing == [], f"OffloadingStore does not define {missing}"
    for name, method in methods.items():
        assert inspect.signature(vars(OffloadingStore)[name]) == inspect.signature(method), name
