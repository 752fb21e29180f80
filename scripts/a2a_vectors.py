"""Write (or with --check, verify) docs/a2a-test-vectors.json: envelopes, their ids and signatures.

The vectors let an agent in any language check its canonical form, message id and HMAC signature
against this implementation's. `make check-protos`-style: CI fails when they are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cmo.a2a import (
    AgentId,
    Budget,
    Cost,
    Envelope,
    ErrorInfo,
    HmacKeys,
    SpecialistInvocationRequest,
    SpecialistResult,
    Topic,
)
from cmo.a2a._signing import signed_bytes

OUT = Path(__file__).resolve().parent.parent / "docs" / "a2a-test-vectors.json"
KEY_ID = "test-key-1"
SECRET = b"cmo-a2a-test-vector-secret-0123456789"
"""The test vectors' HMAC key: never use it for anything else."""


def vectors() -> dict[str, Any]:
    orchestrator = AgentId("orchestrator", "triage", "1.0.0")
    healer = AgentId("specialist", "healer", "2.1.0")
    request = Envelope.build(
        SpecialistInvocationRequest(
            task="heal-selector",
            inputs={"selector": "#submit", "page": "https://shop.example/checkout", "attempts": 3},
            budget=Budget(max_minutes=5, max_cost_usd=0.25),
            deadline="2026-12-01T10:05:00.000Z",
        ),
        sender=orchestrator,
        to=healer,
        tenant="acme",
        project="web",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        ts=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        priority="high",
        reply_to=str(Topic.replies("acme", "web", "triage")),
        idempotency_key="run-42:step-3:seq-0",
    )
    result = Envelope.build(
        SpecialistResult(
            status="succeeded",
            confidence=0.92,
            cost=Cost(usd=0.031, minutes=0.4),
            errors=[],
            proposal={"selector": "button[data-test='submit']", "note": "ïd changed → data-test"},
        ),
        sender=healer,
        to=orchestrator,
        tenant="acme",
        project="web",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        ts=datetime(2026, 12, 1, 10, 0, 2, 345000, tzinfo=UTC),
        correlation_id=request.meta.message_id,
    )
    failed = Envelope.build(
        SpecialistResult(
            status="failed", confidence=0, cost=Cost(usd=0), errors=[ErrorInfo("timeout", "the page did not load")]
        ),
        sender=healer,
        to=orchestrator,
        tenant="acme",
        project="web",
        trace_id="00000000000000000000000000000001",
        ts=datetime(2026, 12, 1, 10, 0, 3, tzinfo=UTC),
    )
    keys = HmacKeys({KEY_ID: SECRET}, current=KEY_ID)
    cases = []
    for name, envelope in (("invocation", request), ("result", result), ("failed-result", failed)):
        signed = keys.sign(envelope)
        unsigned = envelope.to_json()
        without_id = {**unsigned, "meta": {k: v for k, v in unsigned["meta"].items() if k != "message_id"}}
        cases.append(
            {
                "name": name,
                "envelope_without_id": without_id,
                "id_input": _canonical_without_id(envelope),
                "message_id": envelope.meta.message_id,
                "signed_input": signed_bytes(signed).decode(),
                "signature": signed.meta.signature,
                "wire": signed.to_bytes().decode(),
            }
        )
    return {
        "about": "A2A 1.0 test vectors (docs/a2a.md): canonical JSON, message id, HMAC-SHA256 signature.",
        "hmac_key": {"kid": KEY_ID, "secret_utf8": SECRET.decode()},
        "cases": cases,
    }


def _canonical_without_id(envelope: Envelope) -> str:
    from cmo.serialization import canonical_json

    document = envelope.to_json()
    meta = {k: v for k, v in document["meta"].items() if k not in ("message_id", "signature")}
    return canonical_json({"meta": meta, "payload": document["payload"]}).decode()


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is not what this writes")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.name} is stale: run python scripts/a2a_vectors.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
