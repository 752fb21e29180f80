"""A2A envelopes: every type valid and invalid, formats, message ids, signatures, topics, vectors."""

from __future__ import annotations

import copy
import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from click.testing import CliRunner

from cmo.a2a import (
    MESSAGE_TYPES,
    AgentId,
    Budget,
    ContextItem,
    ContextRequest,
    ContextResult,
    Cost,
    DeadLetter,
    DecisionNotice,
    Envelope,
    EnvelopeError,
    ErrorInfo,
    Heartbeat,
    HmacKeys,
    Issue,
    MemoryEvent,
    NextAction,
    Payload,
    RejectedEnvelope,
    RetryDirective,
    ScoringSummary,
    SpecialistInvocationRequest,
    SpecialistResult,
    TaskRequest,
    TaskResult,
    Topic,
    check_pattern,
    matches,
    message_id,
)
from cmo.a2a._schemas import FORMATS
from cmo.cli import main as cmoctl

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR = AgentId("orchestrator", "triage", "1.0.0")
HEALER = AgentId("specialist", "healer", "2.1.0")
TS = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SECRET = b"s" * 32

# One valid payload of each type, and one way to break it: (JSON path, rule) of the error.
EXAMPLES: dict[str, tuple[Payload, dict[str, Any], str, str]] = {
    "TaskRequest": (TaskRequest("classify", {"test": "t1"}), {"inputs": []}, "$.payload.inputs", "type"),
    "TaskResult": (
        TaskResult("failed", error=ErrorInfo("boom", "it broke")),
        {"status": "maybe"},
        "$.payload.status",
        "enum",
    ),
    "MemoryEvent": (MemoryEvent("put", "k", value=[1, 2]), {"op": "upsert"}, "$.payload.op", "enum"),
    "ContextRequest": (ContextRequest("selectors", max_items=5), {"max_items": 0}, "$.payload.max_items", "minimum"),
    "ContextResult": (
        ContextResult([ContextItem("a", 1)], truncated=False),
        {"items": [{"key": "a"}]},
        "$.payload.items[0]",
        "required",
    ),
    "SpecialistInvocationRequest": (
        SpecialistInvocationRequest("heal", {"s": "#x"}, Budget(5, 0.5), "2026-12-01T10:05:00Z"),
        {"deadline": "2026-12-01"},
        "$.payload.deadline",
        "format",
    ),
    "SpecialistResult": (
        SpecialistResult("succeeded", 0.9, Cost(0.01), proposal={"s": "#y"}),
        {"confidence": 1.5},
        "$.payload.confidence",
        "maximum",
    ),
    "RetryDirective": (
        RetryDirective("a" * 64, "busy", 250),
        {"target_message_id": "not-an-id"},
        "$.payload.target_message_id",
        "pattern",
    ),
    "DecisionNotice": (
        DecisionNotice(
            "approve",
            "the healer's fix passes",
            ScoringSummary(0.9, 0.8, 17.5),
            [NextAction("merge", HEALER, "2026-12-02T00:00:00Z")],
            [Issue("flaky", "retried twice", "warning")],
        ),
        {"issues": [{"code": "x", "message": "y", "severity": "fatal"}]},
        "$.payload.issues[0].severity",
        "enum",
    ),
    "Heartbeat": (Heartbeat("healthy", load=0.25, lease_seconds=60), {"load": -0.1}, "$.payload.load", "minimum"),
    "DeadLetter": (
        DeadLetter("bad_signature", "no match", "qa.acme.web.specialists.healer.invoke", "{}"),
        {"reason": "Bad Signature"},
        "$.payload.reason",
        "pattern",
    ),
}


def build(payload: Payload, **meta: Any) -> Envelope:
    return Envelope.build(
        payload,
        sender=meta.pop("sender", ORCHESTRATOR),
        to=meta.pop("to", HEALER),
        tenant=meta.pop("tenant", "acme"),
        project=meta.pop("project", "web"),
        trace_id=meta.pop("trace_id", "0" * 32),
        ts=meta.pop("ts", TS),
        **meta,
    )


def reidentified(document: dict[str, Any]) -> dict[str, Any]:
    """The document with its message id recomputed (so that only the change made is wrong)."""
    document["meta"]["message_id"] = message_id(document)
    return document


def test_there_are_eleven_types_and_an_example_of_each():
    assert len(MESSAGE_TYPES) == 11
    assert sorted(EXAMPLES) == sorted(MESSAGE_TYPES)


@pytest.mark.parametrize("message_type", sorted(EXAMPLES))
def test_each_type_round_trips_through_the_wire(message_type: str):
    payload = EXAMPLES[message_type][0]
    envelope = build(payload)
    parsed = Envelope.parse(envelope.to_bytes())
    assert parsed == envelope
    assert parsed.meta.type == message_type
    assert parsed.typed_payload() == payload
    assert parsed.payload_as(type(payload)) == payload


@pytest.mark.parametrize("message_type", sorted(EXAMPLES))
def test_each_type_refuses_a_bad_payload_naming_the_path_and_the_rule(message_type: str):
    payload, change, path, rule = EXAMPLES[message_type]
    document = build(payload).to_json()
    document["payload"].update(change)
    with pytest.raises(EnvelopeError) as raised:
        Envelope.parse(json.dumps(reidentified(document)))
    assert (raised.value.path, raised.value.rule) == (path, rule), str(raised.value)
    assert raised.value.reason == "invalid_envelope"
    assert str(raised.value).startswith(f"invalid_envelope: {path}: ")


@pytest.mark.parametrize(
    ("edit", "path", "rule"),
    [
        (lambda m: m.update(ts="2026-02-30T10:00:00Z"), "$.meta.ts", "format"),
        (lambda m: m.update(ts="2026-12-01T25:00:00Z"), "$.meta.ts", "format"),
        (lambda m: m.update(ts="2026-12-01 10:00:00Z"), "$.meta.ts", "format"),
        (lambda m: m.update(ts="2026-12-01T10:00:00+01:00"), "$.meta.ts", "pattern"),
        (lambda m: m.update(a2a_version="2.0"), "$.meta.a2a_version", "const"),
        (lambda m: m.update(trace_id="XYZ"), "$.meta.trace_id", "pattern"),
        (lambda m: m.update(to=[]), "$.meta.to", "minItems"),
        (lambda m: m["to"][0].pop("version"), "$.meta.to[0]", "required"),
        (lambda m: m.update(tenant="Acme"), "$.meta.tenant", "pattern"),
        (lambda m: m.update(type="Gossip"), "$.meta.type", "enum"),
        (lambda m: m.update(priority="urgent"), "$.meta.priority", "enum"),
        (lambda m: m.update(reply_to="qa.acme.web.replies"), "$.meta.reply_to", "pattern"),
        (lambda m: m.update(extra=1), "$.meta", "additionalProperties"),
        (lambda m: m.pop("from"), "$.meta", "required"),
    ],
    ids=[
        "30-february",
        "hour-25",
        "no-T",
        "not-utc",
        "version",
        "trace-id",
        "no-recipient",
        "agent-without-version",
        "tenant-case",
        "unknown-type",
        "priority",
        "reply-to-not-a-topic",
        "extra-member",
        "no-sender",
    ],
)
def test_a_bad_meta_is_refused_naming_the_path_and_the_rule(edit, path: str, rule: str):
    document = build(EXAMPLES["TaskRequest"][0]).to_json()
    edit(document["meta"])
    with pytest.raises(EnvelopeError) as raised:
        Envelope.parse(json.dumps(reidentified(document)))
    assert (raised.value.path, raised.value.rule) == (path, rule), str(raised.value)


@pytest.mark.parametrize(
    ("data", "rule"),
    [(b"{not json", "json"), (b"[1]", "type"), (b'{"a": NaN}', "json"), (b"\xff", "json"), (b" " * 5_000_000, "size")],
    ids=["not-json", "not-an-object", "nan", "not-utf8", "too-large"],
)
def test_what_is_not_an_envelope_at_all_is_refused_at_the_root(data: bytes, rule: str):
    with pytest.raises(EnvelopeError) as raised:
        Envelope.parse(data)
    assert (raised.value.path, raised.value.rule) == ("$", rule)


def test_the_date_time_and_uuid_formats_are_enforced_not_ignored():
    # fastjsonschema ignores unknown formats: these are the module's own, registered on compile.
    stamp = fastjsonschema.compile({"type": "string", "format": "date-time"}, formats=FORMATS)
    for good in ("2026-12-01T10:00:00Z", "2026-12-01T10:00:00.123456789Z", "2024-02-29T23:59:59+05:30"):
        stamp(good)
    for bad in ("2026-02-30T10:00:00Z", "2025-02-29T10:00:00Z", "2026-12-01T10:00:00", "2026-13-01T10:00:00Z", "x"):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            stamp(bad)
    uuid = fastjsonschema.compile({"type": "string", "format": "uuid"}, formats=FORMATS)
    uuid("123e4567-e89b-12d3-a456-426614174000")
    for bad in (
        "123e4567-e89b-12d3-a456-42661417400",
        "123e4567e89b12d3a456426614174000",
        "zzze4567-e89b-12d3-a456-426614174000",
    ):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            uuid(bad)


def test_the_message_id_covers_everything_but_itself_and_the_signature():
    envelope = build(EXAMPLES["TaskRequest"][0])
    assert envelope.meta.message_id == message_id(envelope.to_json())
    assert build(EXAMPLES["TaskRequest"][0]).meta.message_id == envelope.meta.message_id, "not deterministic"
    assert build(TaskRequest("classify", {"test": "t2"})).meta.message_id != envelope.meta.message_id
    assert build(EXAMPLES["TaskRequest"][0], priority="low").meta.message_id != envelope.meta.message_id
    signed = HmacKeys({"k": SECRET}, current="k").sign(envelope)
    assert signed.meta.message_id == envelope.meta.message_id

    tampered = envelope.to_json()
    tampered["payload"]["task"] = "other"
    with pytest.raises(EnvelopeError) as raised:
        Envelope.parse(json.dumps(tampered))
    assert (raised.value.path, raised.value.rule) == ("$.meta.message_id", "message_id")


def test_a_signature_verifies_and_any_change_breaks_it():
    keys = HmacKeys({"k1": SECRET}, current="k1")
    signed = keys.sign(build(EXAMPLES["SpecialistResult"][0]))
    assert signed.meta.signature is not None
    assert signed.meta.signature["alg"] == "HMAC-SHA256"
    assert len(signed.meta.signature["value"]) == 43
    keys.verify(Envelope.parse(signed.to_bytes()))

    document = signed.to_json()
    document["payload"]["confidence"] = 0.1  # an attacker who also fixes the message id
    forged = Envelope.parse(json.dumps(reidentified(document)))
    with pytest.raises(RejectedEnvelope) as raised:
        keys.verify(forged)
    assert raised.value.reason == "bad_signature"


def test_unknown_keys_missing_signatures_and_rotation():
    old, new = HmacKeys({"old": SECRET}, current="old"), HmacKeys({"new": b"n" * 32}, current="new")
    envelope = build(EXAMPLES["Heartbeat"][0])
    with pytest.raises(RejectedEnvelope) as raised:
        new.verify(old.sign(envelope))
    assert raised.value.reason == "unknown_key"
    with pytest.raises(RejectedEnvelope) as raised:
        new.verify(envelope)
    assert raised.value.reason == "missing_signature"
    both = HmacKeys({"old": SECRET, "new": b"n" * 32}, current="new")
    both.verify(old.sign(envelope))  # rotation: envelopes signed before it still verify
    both.verify(both.sign(envelope))
    with pytest.raises(ValueError, match="at least 32"):
        HmacKeys({"short": b"x" * 31}, current="short")
    with pytest.raises(ValueError, match="current key"):
        HmacKeys({"a": SECRET}, current="b")


def test_topic_builders_name_the_documented_topics():
    assert str(Topic.specialist_invoke("acme", "web", "healer")) == "qa.acme.web.specialists.healer.invoke"
    assert str(Topic.orchestrator_decisions("acme", "web", "triage")) == "qa.acme.web.orchestrators.triage.decisions"
    assert str(Topic.replies("acme", "web", "triage")) == "qa.acme.web.agents.triage.replies"
    assert str(Topic.registry_heartbeats("acme", "web")) == "qa.acme.web.registry.agents.heartbeat"
    assert str(Topic.dead_letters("acme", "web", prefix="prod")) == "prod.acme.web.system.deadletter.notice"
    assert Topic.parse("qa.acme.web.specialists.healer.invoke") == Topic.specialist_invoke("acme", "web", "healer")
    for bad in ("qa.acme.web.specialists.healer", "qa.Acme.web.a.b.c", "qa.acme.web.a.b.c.d", "qa..web.a.b.c"):
        with pytest.raises(ValueError, match="topic"):
            Topic.parse(bad)
    with pytest.raises(ValueError, match="tenant"):
        Topic.specialist_invoke("acme corp", "web", "healer")


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("qa.acme.web.specialists.healer.invoke", "qa.acme.web.specialists.healer.invoke", True),
        ("qa.acme.web.specialists.*.invoke", "qa.acme.web.specialists.healer.invoke", True),
        ("qa.*.*.specialists.*.invoke", "qa.acme.web.specialists.healer.invoke", True),
        ("qa.acme.>", "qa.acme.web.specialists.healer.invoke", True),
        ("qa.acme.web.specialists.*.invoke", "qa.acme.web.specialists.healer.reply", False),
        ("qa.acme.web.specialists.*.invoke", "qa.other.web.specialists.healer.invoke", False),
        ("qa.*.web.specialists.healer.invoke", "qa.acme.web.specialists.healer", False),
        ("qa.acme.web.specialists.healer.>", "qa.acme.web.specialists.healer", False),
    ],
)
def test_wildcards_match_one_token_or_the_rest(pattern: str, topic: str, expected: bool):
    check_pattern(pattern)
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["qa.>.web.a.b.c", "qa.acme.web", "qa.acme.web.a.b.c.d", "qa.ac me.web.a.b.*"])
def test_bad_patterns_are_refused(pattern: str):
    with pytest.raises(ValueError, match="pattern"):
        check_pattern(pattern)


def test_the_test_vectors_are_current_and_this_implementation_agrees_with_them():
    spec = importlib.util.spec_from_file_location("a2a_vectors", ROOT / "scripts" / "a2a_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    text = (ROOT / "docs" / "a2a-test-vectors.json").read_text(encoding="utf-8")
    assert generator.render() == text, "docs/a2a-test-vectors.json is stale: run python scripts/a2a_vectors.py"
    vectors = json.loads(text)
    key = vectors["hmac_key"]
    keys = HmacKeys({key["kid"]: key["secret_utf8"].encode()}, current=key["kid"])
    for case in vectors["cases"]:
        wire = Envelope.parse(case["wire"])
        keys.verify(wire)
        assert wire.meta.message_id == case["message_id"]
        assert wire.meta.signature == case["signature"]
        without_id = copy.deepcopy(case["envelope_without_id"])
        without_id["meta"]["message_id"] = "x"
        assert message_id(without_id) == case["message_id"]


def test_cmoctl_a2a_validate_says_valid_or_names_what_is_wrong(tmp_path: Path):
    good = build(EXAMPLES["DecisionNotice"][0])
    path = tmp_path / "notice.json"
    path.write_bytes(good.to_bytes())
    result = CliRunner().invoke(cmoctl, ["a2a", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"valid DecisionNotice {good.meta.message_id}")

    document = good.to_json()
    document["payload"]["scoring_summary"]["feasibility"] = 2
    result = CliRunner().invoke(cmoctl, ["a2a", "validate", "-"], input=json.dumps(reidentified(document)))
    assert result.exit_code == 1
    assert "invalid: $.payload.scoring_summary.feasibility: " in result.output
    assert "(maximum)" in result.output
