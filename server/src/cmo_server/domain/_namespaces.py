"""Namespaces: the (tenant, project) every resource belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_NAMESPACE", "NAMESPACE_PART", "Namespace"]


NAMESPACE_PART = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""A tenant or a project: what an A2A topic token may be, so a namespace names its topics as it is."""


@dataclass(frozen=True, slots=True, order=True)
class Namespace:
    """Where a resource lives: every run, graph version, task queue, signal and artifact has one."""

    tenant: str = "default"
    project: str = "default"

    def __str__(self) -> str:
        """The stores' form of it, tenant/project (neither part may hold a slash)."""
        return f"{self.tenant}/{self.project}"

    @classmethod
    def parse(cls, text: str) -> Namespace:
        """The namespace `str()` gave."""
        tenant, _, project = text.partition("/")
        return cls(tenant, project)


DEFAULT_NAMESPACE = Namespace()
