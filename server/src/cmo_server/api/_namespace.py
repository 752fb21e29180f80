"""The one place a request's namespace is resolved, and checked against the caller's.

Each request names its namespace in a `namespace` field (task calls in their task token); unset
parts mean "default". With authentication on, the handler sets the call's `CALLER` first, and a
namespace that is not the caller's is NOT_FOUND, whatever it holds.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from cmo.api.v1 import common_pb2
from cmo_server.auth import CALLER
from cmo_server.domain import DEFAULT_NAMESPACE, NAMESPACE_PART, Namespace
from cmo_server.errors import InvalidArgument, NotFound, ResourceExhausted, shown
from cmo_server.ratelimit import NamespaceRates

__all__ = ["CALLER", "CHARGE", "Charge", "check_namespace", "namespace_of", "namespace_to_proto", "visible"]


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
    """The namespace, if the caller may use it (always, without authentication); NotFound otherwise.

    Under a rate limit, the first namespace a call resolves is charged for it (ResourceExhausted,
    with the delay to retry after, when its bucket is empty).
    """
    caller = CALLER.get()
    if caller is not None and not caller.may_use(namespace):
        raise NotFound(f"namespace {shown(str(namespace))} not found")
    charge = CHARGE.get()
    if charge is not None and not charge.charged:
        charge.charged = True
        if (wait := charge.rates.admit(namespace)) > 0:
            raise ResourceExhausted(
                f"namespace {shown(str(namespace))} is over its rate limit of {charge.rates.rate:g} calls per "
                f"second: retry in {wait:.2f} s",
                retry_after=wait,
            )
    return namespace


@dataclass(slots=True)
class Charge:
    """A call's debt to its namespace's rate limit, paid once."""

    rates: NamespaceRates
    charged: bool = False


CHARGE: ContextVar[Charge | None] = ContextVar("cmo_rate_charge", default=None)
"""The rate limit the call being served is under, if any (set by the handler, per call)."""


def namespace_to_proto(namespace: Namespace) -> common_pb2.Namespace:
    """A namespace for the wire."""
    return common_pb2.Namespace(tenant=namespace.tenant, project=namespace.project)
