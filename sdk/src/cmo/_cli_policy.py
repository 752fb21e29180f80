"""`cmoctl policy test | eval`: Rego policies against their golden cases, or asked about one input.

Needs `cmo-sdk[policy]`; nothing here talks to a server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from cmo.policy import PolicyBundle

__all__ = ["policy"]

_DIRECTORY = click.Path(exists=True, file_okay=False)


@click.group()
def policy() -> None:
    """Rego policies: run their golden tests, or ask them about an input."""


def _bundle(directory: str) -> PolicyBundle:
    try:
        from cmo.policy import PolicyBundle, PolicyError
    except ImportError:
        raise click.ClickException('policies need regopy: pip install "cmo-sdk[policy]"') from None
    try:
        return PolicyBundle.load(directory)
    except PolicyError as err:
        raise click.ClickException(str(err)) from None


@policy.command("test")
@click.argument("directory", type=_DIRECTORY, default="policies")
@click.option("--cases", "case_files", multiple=True, type=click.Path(exists=True), help="Golden files or folders "
              "(default: DIRECTORY's tests/*.golden.json).")  # fmt: skip
@click.option("--verbose", "-v", is_flag=True, help="Name every case, not only the failing ones.")
def test_policies(directory: str, case_files: tuple[str, ...], verbose: bool) -> None:
    """Decide each golden case and compare the denials with those it wants (exit 1 on a mismatch)."""
    from cmo.policy import PolicyError, load_cases, run_cases

    bundle = _bundle(directory)
    try:
        cases = load_cases(case_files or [directory])
    except PolicyError as err:
        raise click.ClickException(str(err)) from None
    if not cases:
        raise click.ClickException(f"no golden cases in {Path(directory) / 'tests'} (*.golden.json)")
    results = run_cases(bundle, cases)
    failed = [r for r in results if not r.passed]
    for result in results:
        if verbose or not result.passed:
            mark = "ok  " if result.passed else "FAIL"
            click.echo(f"{mark} {result.case.file}: {result.case.name}")
            if not result.passed:
                click.echo(f"     {result.problem}")
    click.echo(
        f"{len(results) - len(failed)} passed, {len(failed)} failed — bundle {bundle.hash[:12]} "
        f"({', '.join(bundle.policies) or 'no policy'})"
    )
    if failed:
        raise SystemExit(1)


@policy.command("eval")
@click.argument("directory", type=_DIRECTORY, default="policies")
@click.option("--gate", required=True, type=click.Choice(["step_before", "step_after", "registration", "a2a_send",
              "a2a_receive"]), help="Which gate to ask (docs/policy.md lists each one's input).")  # fmt: skip
@click.option("--input", "input_file", required=True, type=click.File("r"), help="The input, a JSON file ('-': stdin).")
def eval_policies(directory: str, gate: str, input_file: Any) -> None:
    """Print the decision of GATE on an input as JSON (exit 2 when it is a denial)."""
    bundle = _bundle(directory)
    try:
        document = json.load(input_file)
    except ValueError as err:
        raise click.BadParameter(f"not JSON: {err}", param_hint="--input") from None
    if not isinstance(document, dict):
        raise click.BadParameter("the input is a JSON object", param_hint="--input")
    decision = bundle.decide(gate, document)
    click.echo(
        json.dumps(
            {
                "gate": gate,
                "allowed": decision.allowed,
                "denials": [d.to_json() for d in decision.denials],
                "bundle": decision.bundle_hash,
            },
            indent=2,
        )
    )
    if not decision.allowed:
        raise SystemExit(2)
