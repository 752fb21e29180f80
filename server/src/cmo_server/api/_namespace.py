"""The one place a request's namespace is resolved, and checked against the caller's.

Each request names its namespace in a `namespace` field (task calls in their task token); unset
parts mean "default". With authentication on, the handler sets the call's `CALLER` first, and a
namespace that is not the caller's is NOT_FOUND, whatever it holds.
"""

from __future__ import annotations

from typing import Protocol

from cmo.api.v1 import common_pb2
from cmo_server.auth import CALLER
from cmo_server.domain import DEFAULT_NAMESPACE, NAMESPACE_PART, Namespace
from cmo_server.errors import InvalidArgument, NotFound, shown

__all__ = ["CALLER", "check_namespace", "namespace_of", "namespace_to_proto", "visible"]


class _HasNamespace(Protocol):
    @property
    def namespace(self) -> common_pb2.Namespace: ...

    def HasField(self, field_name: str) -> bool: ...


def namespace_of(request: _HasNamespace) -> Namespace:
    """The namespace a request names; default/default when it names none."""
    if not request.HasField("namespace"):
        return visible(DEFAULT_NAMESPACE)
    return check_namespace("namespace", request.namespace.tenant, request.namespace.project)


def check_namespace(field: str, tenant: str, project: str) -> Namespace:
    """A valid namespace from its parts (empty: "default"); InvalidArgument naming the part otherwise."""
    parts = []
    for name, value in (("tenant", tenant), ("project", project)):
        value = value or "default"
        if NAMESPACE_PART.fullmatch(value) is None:
            raise InvalidArgument(
                f"{field}.{name}",
                f"{shown(value)} is not a namespace part: 1 to 63 characters of a-z, 0-9, '_' and '-', "
                "starting with a letter or digit",
            )
        parts.append(value)
    if parts == [DEFAULT_NAMESPACE.tenant, DEFAULT_NAMESPACE.project]:
        return visible(DEFAULT_NAMESPACE)
    return visible(Namespace(*parts))


def visible(namespace: Namespace) -> Namespace:
    """The namespace, if the caller may use it (always, without authentication); NotFound otherwise."""
    caller = CALLER.get()
    if caller is not None and not caller.may_use(namespace):
        raise NotFound(f"namespace {shown(str(namespace))} not found")
    return namespace


def namespace_to_proto(namespace: Namespace) -> common_pb2.Namespace:
    """A namespace for the wire."""
    return common_pb2.Namespace(tenant=namespace.tenant, project=namespace.project)
