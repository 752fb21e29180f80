"""The orchestrator: a graph that classifies a failing test, asks the healer, decides, and says so.

    classify -> heal (ctx.invoke_specialist("healer")) -> decide -> announce (a DecisionNotice)

Every step is durable: the request to the healer is a recorded activity, the wait for its answer
holds no worker slot, and the DecisionNotice goes out in a recorded activity too, so a crash
anywhere repeats nothing that was done. Run it with `python examples/agents/demo.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cmo
from cmo.a2a import AgentId, Envelope, HmacKeys, Issue, ScoringSummary, Topic
from cmo.a2a.agents import DecisionNoticePublisher
from cmo.a2a.invoke import ORCHESTRATOR, Messaging
from cmo.a2a.pipeline import Outbound

HEALER = AgentId("specialist", "healer", "1.0")


@dataclass
class Failure:
    """A failing test, and what the graph made of it."""

    test: str
    message: str
    selector: str = ""
    kind: str = ""
    proposal: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.0
    decision: str = ""
    notice_id: str = ""


healing: cmo.Graph[Failure] = cmo.Graph("test-healing", state=Failure)
MESSAGING: Messaging | None = None
"""Set by the process that runs the worker: the transport and keys the announce step uses."""


@healing.node(entry=True, edges={"selector": "heal", "other": "decide"})
async def classify(failure: Failure, ctx: cmo.NodeContext) -> cmo.NodeResult[Failure]:
    """A missing element is the healer's to fix; anything else is decided as it is."""
    if "no such element" in failure.message.lower() and "'" in failure.message:
        selector = failure.message.split("'")[1]
        return cmo.NodeResult(replace(failure, kind="selector", selector=selector), next="selector")
    return cmo.NodeResult(replace(failure, kind="other"), next="other")


@healing.node(edges={"next": "decide"})
async def heal(failure: Failure, ctx: cmo.NodeContext) -> cmo.NodeResult[Failure]:
    result = await ctx.invoke_specialist(HEALER, task="heal-selector", inputs={"selector": failure.selector})
    return cmo.NodeResult(replace(failure, proposal=result.proposal or {}, confidence=result.confidence), next="next")


@healing.node(edges={"next": "announce"})
async def decide(failure: Failure, ctx: cmo.NodeContext) -> cmo.NodeResult[Failure]:
    decision = "approve" if failure.confidence >= 0.7 else "reject"
    return cmo.NodeResult(replace(failure, decision=decision), next="next")


@cmo.activity
async def publish_notice(decision: str, rationale: str, confidence: float) -> str:
    """Publish the DecisionNotice on the orchestrator's decisions topic; its message id is the record."""
    assert MESSAGING is not None, "the worker's process sets MESSAGING"
    publisher = DecisionNoticePublisher(
        Outbound(MESSAGING.transport, keys=MESSAGING.keys), me=ORCHESTRATOR, tenant="default", project="default"
    )
    issues = [] if decision == "approve" else [Issue("low_confidence", "the healer was not sure", "warning")]
    sent = await publisher.publish(
        decision, rationale, ScoringSummary(confidence, 1.0 if decision == "approve" else 0.5, confidence * 100),
        to=HEALER, issues=issues,
    )  # fmt: skip
    return sent.meta.message_id


@healing.node()
async def announce(failure: Failure, ctx: cmo.NodeContext) -> cmo.NodeResult[Failure]:
    rationale = (
        f"the healer proposes {failure.proposal.get('selector')} for {failure.selector} ({failure.confidence:.0%} sure)"
        if failure.kind == "selector"
        else "not a selector failure: left to people"
    )
    notice_id = await ctx.activity(publish_notice, failure.decision or "reject", rationale, failure.confidence)
    return cmo.NodeResult(replace(failure, notice_id=notice_id))


def decisions_topic() -> str:
    """Where the orchestrator's DecisionNotices go."""
    return str(Topic.orchestrator_decisions("default", "default", ORCHESTRATOR.id))


def describe(envelope: Envelope) -> str:
    """One line for a DecisionNotice."""
    notice = envelope.payload
    return f"{notice['decision']}: {notice['rationale']} (score {notice['scoring_summary']['total_score']:.0f})"


def messaging(transport: Any, keys: HmacKeys) -> Messaging:
    """The worker's messaging, kept for the announce step's activity too."""
    global MESSAGING
    MESSAGING = Messaging(transport, keys)
    return MESSAGING
