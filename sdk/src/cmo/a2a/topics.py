"""Topics: `<prefix>.<tenant>.<project>.<domain>.<entity>.<verb>`, builders, and wildcard patterns.

Every token is 1 to 63 of `a-z`, `0-9`, `_` and `-`, starting with a letter or digit (so a
namespace's tenant and project are tokens as they are). A pattern may use `*` for one token and
`>` (last only) for one or more tokens, as NATS subjects do; every transport matches them alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "Topic", "check_pattern", "matches"]

DEFAULT_PREFIX = "qa"
TOKEN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
TOKENS = 6


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic; `str(topic)` is its dotted name."""

    tenant: str
    project: str
    domain: str
    entity: str
    verb: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        for name in ("prefix", "tenant", "project", "domain", "entity", "verb"):
            value = getattr(self, name)
            if not TOKEN.fullmatch(value):
                raise ValueError(f"topic {name} {value[:64]!r}: must be 1 to 63 of a-z, 0-9, _ and -")

    def __str__(self) -> str:
        return ".".join((self.prefix, self.tenant, self.project, self.domain, self.entity, self.verb))

    @classmethod
    def parse(cls, text: str) -> Topic:
        """A topic from its dotted name; ValueError naming the bad token otherwise."""
        parts = text.split(".")
        if len(parts) != TOKENS:
            raise ValueError(f"topic {text[:128]!r}: must have {TOKENS} dot-separated tokens, has {len(parts)}")
        prefix, tenant, project, domain, entity, verb = parts
        return cls(tenant, project, domain, entity, verb, prefix=prefix)

    # -- the builders ---------------------------------------------------------------------------

    @classmethod
    def specialist_invoke(cls, tenant: str, project: str, specialist: str, *, prefix: str = DEFAULT_PREFIX) -> Topic:
        """Where a specialist takes its invocations: `qa.acme.web.specialists.healer.invoke`."""
        return cls(tenant, project, "specialists", specialist, "invoke", prefix=prefix)

    @classmethod
    def orchestrator_decisions(
        cls, tenant: str, project: str, orchestrator: str, *, prefix: str = DEFAULT_PREFIX
    ) -> Topic:
        """Where an orchestrator publishes its DecisionNotices: `qa.acme.web.orchestrators.triage.decisions`."""
        return cls(tenant, project, "orchestrators", orchestrator, "decisions", prefix=prefix)

    @classmethod
    def replies(cls, tenant: str, project: str, agent: str, *, prefix: str = DEFAULT_PREFIX) -> Topic:
        """Where answers to an agent go (its `reply_to`): `qa.acme.web.agents.orchestrator.replies`."""
        return cls(tenant, project, "agents", agent, "replies", prefix=prefix)

    @classmethod
    def registry_heartbeats(cls, tenant: str, project: str, *, prefix: str = DEFAULT_PREFIX) -> Topic:
        """Where agents' Heartbeat envelopes go: `qa.acme.web.registry.agents.heartbeat`."""
        return cls(tenant, project, "registry", "agents", "heartbeat", prefix=prefix)

    @classmethod
    def dead_letters(cls, tenant: str, project: str, *, prefix: str = DEFAULT_PREFIX) -> Topic:
        """Where DeadLetter notices of a namespace go: `qa.acme.web.system.deadletter.notice`."""
        return cls(tenant, project, "system", "deadletter", "notice", prefix=prefix)


def check_pattern(pattern: str) -> str:
    """`pattern` if it is a valid subscription pattern; ValueError naming the bad token otherwise."""
    parts = pattern.split(".")
    for i, part in enumerate(parts):
        if part == ">":
            if i != len(parts) - 1:
                raise ValueError(f"pattern {pattern[:128]!r}: '>' may only be the last token")
        elif part != "*" and not TOKEN.fullmatch(part):
            raise ValueError(f"pattern {pattern[:128]!r}: token {part[:64]!r} is not a token, '*' or '>'")
    if len(parts) > TOKENS or (parts[-1] != ">" and len(parts) != TOKENS):
        raise ValueError(f"pattern {pattern[:128]!r}: must match {TOKENS}-token topics")
    return pattern


def matches(pattern: str, topic: str) -> bool:
    """Whether `topic` is matched by `pattern` (`*` one token, `>` one or more at the end)."""
    want, have = pattern.split("."), topic.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)
