"""Policy gates: what one decision costs, and the server with authentication and the gates on for W1P.

    uv run python bench/policy_gates.py [--quick]                    # the decisions, in this process
    uv run python bench/run.py --workload W1P [--backend sqlite|postgres]   # W1, off and on, alternating

- `decision`: `PolicyBundle.load("policies").decide(gate, input)` for `step_before` and
  `step_after`, with inputs built as cmo_server/policy/_gates.py builds them from a small
  realistic state (a support ticket, ~1 KB) and an authenticated principal, in three modes
  (`MODES`): `uncached`, every rule of the gate evaluated on every call; `w1`, runs of three steps
  as W1 asks a server, each rule cached on what it reads; `uncached_idle`, as `uncached` but idle
  5 ms before each call, as a server is between two calls. `interpreter` is the part spent in the
  Rego interpreter (`Decision.elapsed`), `rules_evaluated_mean` how many rules a call evaluated.
- `gates_per_step`: what the server does per step with the gates on, in this process, for runs of
  three steps: `PolicyGates.before_step` and `after_step` (input built from the step's canonical
  state and output, decided, written to a decision log file).

One JSON line per measurement. W1P (bench/workloads.py) uses `secured` and `decision_timings`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/policy_gates.py` puts bench/, not the repo root, on the path
    sys.path.insert(0, str(ROOT))

from bench.cpu import calibrate  # noqa: E402
from bench.processes import ServerSpec  # noqa: E402
from bench.workloads import percentile  # noqa: E402
from cmo.policy import PolicyBundle  # noqa: E402

__all__ = ["OFF_ENV", "POLICIES", "W1P_ON", "Secured", "decision_timings", "secured"]

POLICIES = ROOT / "policies"
ISSUER = "https://auth.bench"
KEY_ID = "bench-1"
TARGET_P95_US = 500.0
"""The issue's target: one decision ≤ 0.5 ms p95."""

MODES = (("uncached", False, 1, 0.0), ("w1", True, 3, 0.0), ("uncached_idle", False, 1, 0.005))
"""How `decisions` asks: every rule evaluated on every call (each call another run); as W1's
runs ask a server, three steps a run, each rule answered from the cache unless what it reads
changed (the run id at a run's first step); and uncached again but 5 ms idle before each call,
as a server waits for its worker between two calls (a tenth as many calls): by then the
interpreter's code and data have left the processor's caches."""

OFF_ENV = {"CMO_AUTH": "none", "CMO_POLICY_DIR": "", "CMO_POLICY_DECISION_LOG": ""}
"""W1P's other server: no authentication and no gates, whatever the bench's environment says."""

W1P_ON = ("both", "auth", "policies")
"""What W1P's second server may have on (`run.py --w1p-on`): to see what each part costs."""

SCOPES = ("runs:read", "runs:write", "workers", "registry:read")
ROLES = ("operator",)
"""The principal's roles: one the policies know of nowhere (no slice is restricted to it)."""

TICKET_STATE: dict[str, Any] = {
    "ticket": {
        "id": "T-20931",
        "subject": "Refund not received after cancelling the annual plan",
        "body": (
            "Hello, I cancelled my annual subscription on the 3rd and was told the refund would arrive"
            " within five working days. It has been two weeks and nothing has arrived on my card. The"
            " order number is 55-1182-0931. Could you check what happened and when I can expect it?"
        ),
        "customer": {"id": "C-1881", "plan": "pro", "region": "eu-west", "since": "2023-04-18"},
        "created_at": "2026-11-30T08:12:44Z",
        "channel": "email",
    },
    "label": "billing",
    "priority": 2,
    "confidence": 0.87,
    "messages": [
        {"role": "user", "text": "Where is my refund?"},
        {"role": "assistant", "text": "Looking up order 55-1182-0931 and its refund status."},
    ],
    "tools_called": ["lookup_order", "refund_status"],
    "attempts": 1,
}
OUTPUT: dict[str, Any] = {"label": "billing", "priority": 2, "confidence": 0.87}


@dataclass(frozen=True, slots=True)
class Secured:
    """A server with authentication (jwt, HS256) and the step gates (policies/) on, and a token for it."""

    spec: ServerSpec
    token: str
    """For the client and the worker: every scope they use, every namespace."""
    decision_log: Path
    """CMO_POLICY_DECISION_LOG: one JSON line per decision."""


def secured(spec: ServerSpec, workdir: Path, *, auth: bool = True, policies: bool = True) -> Secured:
    """`spec` with authentication and the gates on (or one of them); the key and the decision log in `workdir`."""
    import jwt

    key = secrets.token_hex(32).encode()
    key_file = workdir / "auth.key"
    key_file.write_bytes(key)
    decision_log = workdir / "decisions.jsonl"
    decision_log.touch()  # empty when the gates are off
    env = {**spec.env, **OFF_ENV}
    if auth:
        env.update(
            {
                "CMO_AUTH": "jwt",
                "CMO_AUTH_KEYS_FILE": str(key_file),
                "CMO_AUTH_KEY_ID": KEY_ID,
                "CMO_AUTH_ALGORITHM": "HS256",
                "CMO_AUTH_ISSUER": ISSUER,
            }
        )
    if policies:
        env.update({"CMO_POLICY_DIR": str(POLICIES), "CMO_POLICY_DECISION_LOG": str(decision_log)})
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "cmo",
        "sub": "bench",
        "iat": now,
        "exp": now + 6 * 3600,
        "scope": " ".join(SCOPES),
        "roles": list(ROLES),
        "namespaces": ["*/*"],
    }
    token = jwt.encode(claims, key, algorithm="HS256", headers={"kid": KEY_ID}) if auth else ""
    parts = [
        *(["auth jwt"] if auth else []),
        *([f"policies {POLICIES.name}/, decision log to a file"] if policies else []),
    ]
    description = f"{spec.description}; {', '.join(parts) or 'nothing on'}"
    return Secured(replace(spec, env=env, description=description), token, decision_log)


@contextlib.contextmanager
def decision_timings(path: Path, into: dict[str, Any]) -> Iterator[None]:
    """The decisions logged to `path` while the context runs: how many, and `elapsed_us` by gate."""
    start = path.stat().st_size if path.exists() else 0
    yield
    with path.open("rb") as log:
        log.seek(start)
        lines = [json.loads(line) for line in log if line.strip()]
    into["count"] = len(lines)
    into["denied"] = sum(1 for line in lines if not line["allowed"])
    by_gate: dict[str, list[float]] = {}
    for line in lines:
        by_gate.setdefault(line["gate"], []).append(float(line["elapsed_us"]))
    into["interpreter_us"] = {gate: _us_stats(values, unit=1.0) for gate, values in sorted(by_gate.items())}


def _us_stats(values: Sequence[float], *, unit: float = 1e6) -> dict[str, float]:
    """p50/p95/p99/mean/max of `values` in µs (`unit`: µs per unit of the values)."""
    return {
        "p50_us": round(unit * percentile(values, 50), 1),
        "p95_us": round(unit * percentile(values, 95), 1),
        "p99_us": round(unit * percentile(values, 99), 1),
        "mean_us": round(unit * statistics.fmean(values), 1),
        "max_us": round(unit * max(values), 1),
    }


def step_input(bundle: PolicyBundle, run_id: str, state: bytes, *, index: int) -> dict[str, Any]:
    """A step's input as cmo_server/policy/_gates.py builds it, for an authenticated caller."""
    document: dict[str, Any] = {
        "namespace": {"tenant": "acme", "project": "support"},
        "run": {"id": run_id},
        "graph": {"id": "triage", "version": 3},
        "node": {"id": "classify", "queue": "default"},
        "step": {"index": index, "attempt": 1},
        "principal": {
            "authenticated": True,
            "subject": "bench",
            "scopes": list(SCOPES),
            "roles": list(ROLES),
            "namespaces": ["*/*"],
        },
        "state_bytes": len(state),
    }
    if bundle.reads("state") or bundle.reads("state_keys"):
        decoded = json.loads(state)
        document["state"] = decoded
        document["state_keys"] = sorted(decoded)
    return document


def after_input(bundle: PolicyBundle, document: dict[str, Any], output: bytes) -> dict[str, Any]:
    """`document` (a step's input) as the `step_after` gate sees it."""
    document = {**document, "next_node": "route", "output_bytes": len(output)}
    if bundle.reads("output") or bundle.reads("output_keys"):
        decoded = json.loads(output)
        document["output"] = decoded
        document["output_keys"] = sorted(decoded)
    return document


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def decisions(n: int, warmup: int) -> list[dict[str, Any]]:
    """`decide` for each step gate, `n` times each (after `warmup`), in each mode of `MODES`."""
    state, output = _canonical(TICKET_STATE), _canonical(OUTPUT)
    lines = []
    for mode, cache, steps_per_run, idle in MODES:
        bundle = PolicyBundle.load(POLICIES, cache=cache)
        calls, skipped = (n // 10, warmup // 10) if idle else (n, warmup)
        tag = uuid.uuid4().hex[:12]
        times: dict[str, list[float]] = {"step_before": [], "step_after": []}
        inside: dict[str, list[float]] = {"step_before": [], "step_after": []}
        evaluated: dict[str, list[int]] = {"step_before": [], "step_after": []}
        documents: dict[str, dict[str, Any]] = {}
        for i in range(skipped + calls):
            before = step_input(bundle, f"run-{tag}-{i // steps_per_run}", state, index=i % steps_per_run)
            documents = {"step_before": before, "step_after": after_input(bundle, before, output)}
            for gate, document in documents.items():
                if idle:
                    time.sleep(idle)
                t0 = time.perf_counter()
                decision = bundle.decide(gate, document)
                took = time.perf_counter() - t0
                if not decision.allowed:
                    raise RuntimeError(f"{gate}: denied: {decision}")
                if i >= skipped:
                    times[gate].append(took)
                    inside[gate].append(decision.elapsed)
                    evaluated[gate].append(decision.evaluated)
        for gate, document in documents.items():
            stats = _us_stats(times[gate])
            lines.append(
                {
                    "measurement": "decision",
                    "mode": mode,
                    "gate": gate,
                    "n": calls,
                    "warmup": skipped,
                    "idle_ms_before_each": idle * 1000,
                    "rules": len(bundle._units[gate]),
                    "rules_evaluated_mean": round(statistics.fmean(evaluated[gate]), 2),
                    "input_bytes": len(_canonical(document)),
                    **stats,
                    "interpreter": _us_stats(inside[gate]),
                    "target": f"p95_us <= {TARGET_P95_US:g}",
                    "meets_target": stats["p95_us"] <= TARGET_P95_US,
                }
            )
    return lines


def gates_per_step(n: int, warmup: int, workdir: Path) -> dict[str, Any]:
    """`PolicyGates.before_step` + `after_step` as the engine calls them for W1's runs of three steps,
    decisions logged to a file."""
    from cmo_server.auth import CALLER, Principal
    from cmo_server.domain import Namespace
    from cmo_server.engine import StepView
    from cmo_server.policy import DecisionLog, PolicyGates

    log = DecisionLog(str(workdir / "decisions.jsonl"))
    gates = PolicyGates(PolicyBundle.load(POLICIES), log)
    state, output = _canonical(TICKET_STATE), _canonical(OUTPUT)
    tag = uuid.uuid4().hex[:12]
    reset = CALLER.set(Principal(subject="bench", scopes=SCOPES, namespaces=("*/*",), roles=ROLES))
    before: list[float] = []
    after: list[float] = []
    try:
        for i in range(warmup + n):
            step = StepView(
                Namespace("acme", "support"), f"run-{tag}-{i // 3}", "triage", 3, "classify", "default", i % 3, 1, state
            )
            t0 = time.perf_counter()
            denied = gates.before_step(step)
            t1 = time.perf_counter()
            denied = denied or gates.after_step(step, output=output, next_node="route")
            t2 = time.perf_counter()
            if denied is not None:
                raise RuntimeError(f"denied: {denied}")
            if i >= warmup:
                before.append(t1 - t0)
                after.append(t2 - t1)
    finally:
        CALLER.reset(reset)
        log.close()
    return {
        "measurement": "gates_per_step",
        "n": n,
        "warmup": warmup,
        "step_before": _us_stats(before),
        "step_after": _us_stats(after),
        "per_step": _us_stats([b + a for b, a in zip(before, after, strict=True)]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke test, not a measurement")
    args = parser.parse_args(argv)
    n, warmup = (500, 100) if args.quick else (5000, 500)
    machine = {"calibration_ms": calibrate()}
    for line in decisions(n, warmup):
        print(json.dumps({**line, **machine}), flush=True)
    with tempfile.TemporaryDirectory(prefix="cmo-bench-policy-") as tmp:
        print(json.dumps({**gates_per_step(n, warmup, Path(tmp)), **machine}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
