"""Scope and capability rules (no token library needed): what a granted scope covers.

Scopes are `action` or `action:resource`; a granted scope matches a required one exactly, by `*`
(everything), by `action:*`, or by a namespace prefix (`repo.write:healing/*` grants
`repo.write:healing/selectors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["grants", "has_capabilities", "scopes_of"]


def scopes_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """A token's scopes: `scope` (space-separated, OAuth 2) or `scopes` (a list)."""
    if isinstance(claims.get("scope"), str):
        return tuple(claims["scope"].split())
    listed = claims.get("scopes")
    return tuple(s for s in listed if isinstance(s, str)) if isinstance(listed, list) else ()


def grants(granted: str, required: str) -> bool:
    """Whether one granted scope covers a required one (see the module's docstring)."""
    if granted in ("*", required):
        return True
    action, _, resource = granted.partition(":")
    wanted_action, _, wanted_resource = required.partition(":")
    if action != wanted_action or not resource:
        return False
    if resource == "*":
        return True
    return resource.endswith("/*") and wanted_resource.startswith(resource[:-1])


def has_capabilities(claims: Mapping[str, Any], required: Iterable[str]) -> bool:
    """Whether a capability token's `capabilities` cover every required one (scope rules)."""
    listed = claims.get("capabilities")
    held = [c for c in listed if isinstance(c, str)] if isinstance(listed, list) else []
    return all(any(grants(h, need) for h in held) for need in required)
