"""Who calls, and what that caller may do: its scopes and the namespaces its token names."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cmo.a2a.scopes import grants, scopes_of
from cmo_server.domain import NAMESPACE_PART, Namespace

__all__ = ["CALLER", "Principal", "lease_owner"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `namespaces` are `tenant/project` patterns where `*` matches a whole part (`acme/*`: every
    project of acme; `*/*`: every namespace). They come from the token's `namespaces` claim (a
    list), or from its `tenant` and `project` claims (each a name or `*`; `project` unset: `*`).
    A token that names none may use no namespace.
    """

    subject: str
    scopes: tuple[str, ...]
    namespaces: tuple[str, ...]
    roles: tuple[str, ...] = ()
    """The token's `roles` claim: what the policies know the caller as (`admin`, `healer`, ...)."""

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        listed = claims.get("namespaces")
        if isinstance(listed, list):
            patterns = tuple(p for p in listed if isinstance(p, str) and _is_pattern(p))
        elif isinstance(claims.get("tenant"), str):
            project = claims.get("project") if isinstance(claims.get("project"), str) else "*"
            pattern = f"{claims['tenant']}/{project}"
            patterns = (pattern,) if _is_pattern(pattern) else ()
        else:
            patterns = ()
        listed_roles = claims.get("roles")
        roles = tuple(r for r in listed_roles if isinstance(r, str)) if isinstance(listed_roles, list) else ()
        return cls(str(claims.get("sub", "")), scopes_of(claims), patterns, roles)

    def has_scope(self, required: str) -> bool:
        """Whether one of its scopes covers `required` (`*`, exactly, or `action:*`)."""
        return any(grants(scope, required) for scope in self.scopes)

    def may_use(self, namespace: Namespace) -> bool:
        """Whether `namespace` is one of its namespaces."""
        tenant, project = namespace.tenant, namespace.project
        for pattern in self.namespaces:
            want_tenant, _, want_project = pattern.partition("/")
            if _part(want_tenant, tenant) and _part(want_project, project):
                return True
        return False


CALLER: ContextVar[Principal | None] = ContextVar("cmo_caller", default=None)
"""The authenticated caller of the RPC being served (each RPC runs in a task of its own)."""


def lease_owner(worker_id: str) -> str:
    """Whom a task leased to `worker_id` belongs to: that worker of the calling principal.

    With authentication on, the same worker id sent by another principal (another team's token,
    or a stolen task token) holds no lease of this one's: every task call is fenced by it.
    """
    caller = CALLER.get()
    return worker_id if caller is None else f"{worker_id}@{caller.subject}"


def _part(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value


def _is_pattern(text: str) -> bool:
    """`tenant/project`, each part a namespace part or `*` (no other wildcard: `ac*` names nothing)."""
    tenant, slash, project = text.partition("/")
    return bool(slash) and all(p == "*" or NAMESPACE_PART.fullmatch(p) is not None for p in (tenant, project))
