"""The project's policies against their golden cases, and the bundle's own guarantees: a policy that
cannot say "allow" correctly says "deny" (v0 syntax, a broken result, an unknown gate), the input
is cut to what the policies read, and `cmoctl policy test | eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cmo.cli import main
from cmo.policy import GATES, PolicyBundle, PolicyError, load_cases, run_cases

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BUNDLE = PolicyBundle.load(POLICIES)
CASES = load_cases([POLICIES])


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}:{c.name}" for c in CASES])
def test_the_projects_policies_give_each_golden_case_its_exact_denials(case):
    [result] = run_cases(BUNDLE, [case])
    assert result.passed, result.problem


def test_every_rule_of_the_projects_policies_has_an_allow_and_a_deny_case():
    denied = {(w["policy"], w["rule"]) for c in CASES for w in c.want}
    rules = set()
    for path in POLICIES.glob("*.rego"):
        policy = path.stem
        for line in path.read_text().splitlines():
            if '"rule": "' in line and line.startswith(("deny_", "_namespace_denials", "_size_denials")):
                rules.add((policy, line.split('"rule": "')[1].split('"')[0]))
    assert rules <= denied, f"rules without a deny case: {sorted(rules - denied)}"
    allowed_gates = {c.gate for c in CASES if not c.want}
    assert allowed_gates == set(GATES)


def _bundle(source: str) -> PolicyBundle:
    return PolicyBundle({"p.rego": source})


def test_a_v0_rule_that_would_silently_mean_something_else_is_a_denial():
    # In v0 `deny_step_before[msg] { ... }` is a partial set; the interpreter makes it an object.
    bundle = _bundle('package cmo.policies.old\n\ndeny_step_before[msg] { msg := "x" }\n')
    decision = bundle.decide("step_before", {})
    assert {(d.policy, d.rule) for d in decision.denials} == {("old", "malformed_rule")}
    assert "deny_step_before is not a set (write Rego v1: `deny_step_before contains {...} if {...}`)" in {
        d.reason for d in decision.denials
    }


def test_members_without_a_rule_and_reason_are_a_denial():
    bundle = _bundle('package cmo.policies.sloppy\n\nimport rego.v1\n\ndeny_step_after contains "no" if true\n')
    [denial] = bundle.decide("step_after", {}).denials
    assert (denial.policy, denial.rule) == ("sloppy", "malformed_rule")


def test_a_result_the_interpreter_cannot_render_fails_closed():
    # The interpreter breaks a computed string handed to sprintf's %s (its JSON does not parse).
    source = (
        "package cmo.policies.broken\n\nimport rego.v1\n\n"
        'deny_step_before contains {"rule": "r", "reason": sprintf("a %s b", [concat(", ", input.x)])} if input.x\n'
    )
    decision = _bundle(source).decide("step_before", {"x": ["a", "b"]})
    assert [(d.policy, d.rule) for d in decision.denials] == [("cmo", "evaluation_error")]
    assert _bundle(source).decide("step_before", {}).allowed  # where the rule does not fire, nothing breaks


def test_a_policy_that_does_not_parse_names_its_file():
    with pytest.raises(PolicyError, match=r"^p\.rego: "):
        _bundle("package cmo.policies.bad\n\ndeny_step_before contains x if { x := }\n")


def test_a_directory_without_policies_or_with_clashing_data_is_refused(tmp_path: Path):
    with pytest.raises(PolicyError, match=r"no \.rego files"):
        PolicyBundle.load(tmp_path)
    (tmp_path / "p.rego").write_text("package cmo.policies.p\n")
    (tmp_path / "a.json").write_text('{"settings": {"x": 1}}')
    (tmp_path / "b.json").write_text('{"settings": {"x": 2}}')
    with pytest.raises(PolicyError, match=r"data\.settings\.x is also set"):
        PolicyBundle.load(tmp_path)
    (tmp_path / "b.json").write_text("[1]")
    with pytest.raises(PolicyError, match=r"b\.json: a data file holds a JSON object"):
        PolicyBundle.load(tmp_path)


def test_an_unknown_gate_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown gate"):
        BUNDLE.decide("step_sideways", {})


def test_only_what_the_policies_read_is_handed_to_the_interpreter():
    bundle = _bundle(
        "package cmo.policies.p\n\nimport rego.v1\n\n"
        'deny_step_before contains {"rule": "big", "reason": "x"} if input.step.index > 2\n'
    )
    assert bundle.reads("step")
    assert not bundle.reads("state")
    assert bundle.decide("step_before", {"step": {"index": 3}, "state": {"huge": "x" * 100_000}}).denials
    whole = _bundle(
        "package cmo.policies.p\n\nimport rego.v1\n\n"
        'deny_step_before contains {"rule": "r", "reason": "x"} if input[_]\n'
    )
    assert whole.reads("anything")


def test_decisions_are_kept_by_input_unless_a_policy_reads_the_clock():
    pure = _bundle(
        "package cmo.policies.p\n\nimport rego.v1\n\n"
        'deny_step_before contains {"rule": "r", "reason": "x"} if input.a\n'
    )
    first = pure.decide("step_before", {"a": 1})
    again = pure.decide("step_before", {"a": 1})
    assert first.denials == again.denials
    assert first.elapsed > 0
    assert again.elapsed == 0  # from the cache
    clock = _bundle(
        "package cmo.policies.p\n\nimport rego.v1\n\n"
        'deny_step_before contains {"rule": "r", "reason": "x"} if time.now_ns() > input.a\n'
    )
    clock.decide("step_before", {"a": 1})
    assert clock.decide("step_before", {"a": 1}).elapsed > 0


def test_a_golden_case_that_does_not_match_says_how(tmp_path: Path):
    golden = tmp_path / "tests" / "wrong.golden.json"
    golden.parent.mkdir()
    case = {"name": "wrongly expected", "gate": "step_before", "input": {"run": {"id": "x y"}, "step": {"index": 0}},
            "want": [{"policy": "default", "rule": "max_steps"}]}  # fmt: skip
    golden.write_text(json.dumps({"cases": [case]}))
    [result] = run_cases(BUNDLE, load_cases([tmp_path]))
    assert not result.passed
    assert result.problem == "not denied by default.max_steps; also denied by default.run_id_format"


def test_cmoctl_policy_test_passes_on_the_projects_policies_and_fails_on_a_wrong_case(tmp_path: Path):
    runner = CliRunner()
    passed = runner.invoke(main, ["policy", "test", str(POLICIES)])
    assert passed.exit_code == 0, passed.output
    assert f"{len(CASES)} passed, 0 failed" in passed.output
    wrong = tmp_path / "wrong.golden.json"
    case = {"name": "w", "gate": "step_after", "input": {}, "want": [{"policy": "default", "rule": "step_error"}]}
    wrong.write_text(json.dumps({"cases": [case]}))
    failed = runner.invoke(main, ["policy", "test", str(POLICIES), "--cases", str(wrong)])
    assert failed.exit_code == 1
    assert "FAIL wrong.golden.json: w" in failed.output
    assert "not denied by default.step_error" in failed.output


def test_cmoctl_policy_eval_prints_the_decision_and_exits_2_on_a_denial(tmp_path: Path):
    runner = CliRunner()
    request = tmp_path / "input.json"
    request.write_text(json.dumps({"agent": {"kind": "specialist", "name": "x", "version": "1.0", "capabilities": []}}))
    denied = runner.invoke(main, ["policy", "eval", str(POLICIES), "--gate", "registration", "--input", str(request)])
    assert denied.exit_code == 2
    decision = json.loads(denied.output)
    assert decision["allowed"] is False
    assert decision["denials"] == [
        {"policy": "slices", "rule": "specialist_capabilities", "reason": "specialist x registers no capability"}
    ]
    assert decision["bundle"] == BUNDLE.hash
    request.write_text(json.dumps({"agent": {"kind": "worker"}}))
    allowed = runner.invoke(main, ["policy", "eval", str(POLICIES), "--gate", "registration", "--input", str(request)])
    assert allowed.exit_code == 0
    assert json.loads(allowed.output)["allowed"] is True
    request.write_text("[1, 2")
    bad = runner.invoke(main, ["policy", "eval", str(POLICIES), "--gate", "registration", "--input", str(request)])
    assert bad.exit_code == 2
    assert "--input" in bad.output
