"""A bundle caches each gate rule on what that rule reads, and decides exactly as the policies as written do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import regopy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmo.policy import GATES, Denial, PolicyBundle
from cmo.policy._rules import split_policies

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BUNDLE = PolicyBundle.load(POLICIES)


def _step(run_id: str = "run-1", index: int = 0, graph: str = "g", roles: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "run": {"id": run_id},
        "graph": {"id": graph, "version": 1},
        "step": {"index": index, "attempt": 1},
        "principal": {"roles": list(roles)},
        "state_keys": ["ticket"],
        "state": {"ticket": "t"},
        "state_bytes": 20,
    }


def test_each_rule_is_evaluated_again_only_when_what_it_reads_changes():
    bundle = PolicyBundle.load(POLICIES)
    units = len(bundle._units["step_before"])
    assert units == 5  # default.rego's three rules and slices.rego's two
    assert bundle.decide("step_before", _step("run-a", 0)).evaluated == units
    assert bundle.decide("step_before", _step("run-a", 1)).evaluated == 1  # only max_steps reads the index
    assert bundle.decide("step_before", _step("run-b", 1)).evaluated == 1  # only run_id_format reads the id
    again = bundle.decide("step_before", _step("run-b", 1))
    assert (again.evaluated, again.elapsed) == (0, 0.0)
    assert bundle.decide("step_before", _step("run-b", 1, roles=("admin",))).evaluated == 2  # slices' two


def test_denials_from_the_cache_and_from_the_interpreter_combine():
    bundle = PolicyBundle.load(POLICIES)
    first = bundle.decide("step_before", _step("bad id", 0))
    assert [d.rule for d in first.denials] == ["run_id_format"]
    both = bundle.decide("step_before", _step("bad id", 10_000))
    assert both.evaluated == 1
    assert [d.rule for d in both.denials] == ["max_steps", "run_id_format"]


def test_a_value_is_not_mistaken_for_its_spelling_in_another_type():
    bundle = _bundle('deny_step_after contains {"rule": "number", "reason": "x"} if is_number(input.v)\n')
    assert bundle.decide("step_after", {"v": 1}).denials
    assert not bundle.decide("step_after", {"v": "1"}).denials
    assert not bundle.decide("step_after", {"v": True}).denials
    assert not bundle.decide("step_after", {}).denials
    assert not bundle.decide("step_after", {"v": None}).denials


def test_a_helper_rule_s_reads_count_for_the_rules_that_use_it():
    _, units = split_policies(
        {
            "p.rego": "package cmo.policies.p\n\nimport rego.v1\n\n"
            'deny_step_before contains {"rule": "a", "reason": "x"} if _big\n\n'
            'deny_step_before contains {"rule": "b", "reason": "x"} if input.run.id == ""\n\n'
            "_big if _size > 3\n\n"
            "_size := input.state_bytes\n"
        },
        GATES,
    )
    a, b = units["p"]["step_before"]
    assert a.reads == frozenset({("state_bytes",)})
    assert b.reads == frozenset({("run", "id")})


def test_a_policy_it_cannot_split_stays_one_rule_and_one_that_reads_another_package_reads_everything():
    _, units = split_policies(
        {
            "p.rego": "package cmo.policies.p\n\nimport rego.v1\n\n"
            'deny_step_before := {"not": "a set"}\n\n'
            'deny_step_after contains {"rule": "b", "reason": "x"} if input.a\n',
            "q.rego": "package cmo.policies.q\n\nimport rego.v1\n\n"
            'deny_step_before contains {"rule": "c", "reason": "x"} if data.cmo.policies.p.deny_step_after\n',
        },
        GATES,
    )
    assert [(u.rule, u.reads) for u in units["p"]["step_before"]] == [("deny_step_before", frozenset({("a",)}))]
    assert [(u.rule, u.reads) for u in units["q"]["step_before"]] == [("deny_step_before", None)]


def test_a_rule_that_refers_to_another_gate_rule_reads_what_that_one_reads():
    bundle = _bundle(
        'deny_step_before contains {"rule": "size", "reason": "x"} if input.state_bytes > 3\n\n'
        'deny_step_after contains {"rule": "echo", "reason": "x"} if count(deny_step_before) > 0\n\n'
        'deny_step_after contains {"rule": "id", "reason": "x"} if input.run.id == ""\n'
    )
    echo, _ = bundle._units["step_after"]
    assert echo.reads == frozenset({("state_bytes",)})
    assert not bundle.decide("step_after", {"state_bytes": 1, "run": {"id": "r"}}).denials
    rules = [d.rule for d in bundle.decide("step_after", {"state_bytes": 9, "run": {"id": "r"}}).denials]
    assert rules == ["echo"]


# -- the policies as written, asked directly, are the reference --------------------------------


class _Reference:
    """The project's policies as written, each `deny_<gate>` asked on its own."""

    def __init__(self, data: dict[str, Any]) -> None:
        builder = regopy.Interpreter()
        builder.add_data(data)
        for name, source in BUNDLE.modules.items():
            builder.add_module(name, source)
        self.asked = [(p, g) for p in BUNDLE.policies for g in GATES if g in BUNDLE.rules[p]]
        self.bundle = builder.build(None, [f"cmo/policies/{p}/deny_{g}" for p, g in self.asked])
        self.interpreter = regopy.Interpreter()

    def denials(self, gate: str, document: dict[str, Any]) -> list[Denial]:
        self.interpreter.set_input(document)
        found: set[Denial] = set()
        for policy, asked in self.asked:
            if asked == gate:
                output = self.interpreter.query_bundle_entrypoint(self.bundle, f"cmo/policies/{policy}/deny_{gate}")
                assert output.ok(), output
                found |= {Denial(policy, d["rule"], d["reason"]) for d in output.results[0].expressions[0]}
        return sorted(found, key=lambda d: (d.policy, d.rule, d.reason))


REFERENCE = _Reference(BUNDLE.data)
_BLOCKING_DATA = json.loads(json.dumps(BUNDLE.data))
_BLOCKING_DATA["settings"]["default"]["blocked_graphs"] = ["blocked"]
BLOCKING = PolicyBundle(BUNDLE.modules, _BLOCKING_DATA)
BLOCKING_REFERENCE = _Reference(_BLOCKING_DATA)

_run_ids = st.sampled_from(["run-1", "run-2", "a:b.c", "bad id", "", "-x", "r" * 130])
_roles = st.lists(st.sampled_from(["healer", "admin", "reviewer"]), max_size=2, unique=True)
_keys = st.lists(st.sampled_from(["ticket", "selector_history", "pii", "customer_pii", "healing/x"]), unique=True)
_errors = st.sampled_from([None, False, "", 0, "boom", 1, True, {"code": 3}])


@st.composite
def _step_documents(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    gate = draw(st.sampled_from(["step_before", "step_after"]))
    keys = draw(_keys)
    state: dict[str, Any] = dict.fromkeys(keys, 1)
    if draw(st.booleans()):
        state["error"] = draw(_errors)
    document = {
        "run": {"id": draw(_run_ids)},
        "graph": {"id": draw(st.sampled_from(["g", "blocked"])), "version": 1},
        "step": {"index": draw(st.sampled_from([0, 1, 9_999, 10_000, 20_000])), "attempt": 1},
        "principal": {"roles": draw(_roles)},
        "state": state,
        "state_keys": sorted(state),
        "state_bytes": draw(st.sampled_from([10, 10_485_760, 10_485_761])),
    }
    if gate == "step_after":
        output_keys = draw(_keys)
        document |= {"output_keys": output_keys, "output": dict.fromkeys(output_keys, 1)}
        document["output_bytes"] = draw(st.sampled_from([2, 10_485_761]))
    return gate, document


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_step_documents(), min_size=1, max_size=12))
def test_decisions_rule_by_rule_and_from_the_cache_are_those_of_the_policies_as_written(sequence):
    # One bundle for every example: its caches carry over from one sequence to the next.
    for gate, document in sequence:
        expected = BLOCKING_REFERENCE.denials(gate, document)
        assert list(BLOCKING.decide(gate, document).denials) == expected, document


def test_the_golden_inputs_decide_as_written_at_every_gate():
    for path in sorted((POLICIES / "tests").glob("*.golden.json")):
        for case in json.loads(path.read_text())["cases"]:
            if "data" in case:
                continue
            expected = REFERENCE.denials(case["gate"], case["input"])
            assert list(BUNDLE.decide(case["gate"], case["input"]).denials) == expected, case["name"]


def _bundle(rules: str) -> PolicyBundle:
    return PolicyBundle({"p.rego": "package cmo.policies.p\n\nimport rego.v1\n\n" + rules})


def test_the_interpreter_is_called_holding_the_gil():
    # Loading a bundle swaps regopy's CDLL (which releases the GIL on every call) for a PyDLL.
    import ctypes

    import regopy.output
    import regopy.rego_shared

    assert isinstance(regopy.rego_shared.rego, ctypes.PyDLL)
    assert regopy.output.rego_output_node is regopy.rego_shared.rego.regoOutputNode
    assert BUNDLE.decide("step_before", _step("bad id")).denials  # and it still decides
