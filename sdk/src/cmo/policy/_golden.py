"""Golden tests of policies: an input, a gate, and the exact denials the policies must give.

A case file (`tests/*.golden.json` beside the policies) holds `{"cases": [...]}`; each case is
`{"name", "gate", "input", "want"}` where `want` lists the denials as `{"policy", "rule"}` (and
`"reason"` when the exact text matters); `[]` means the input must be allowed. A case may add
`"data"`, merged over the policies' data for it alone (to try a setting the shipped data leaves
empty, such as a block list). Comparing the whole
set, not "is it denied", is what catches a rule that silently means something else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmo.policy._bundle import GATES, PolicyBundle, PolicyError

__all__ = ["CaseResult", "GoldenCase", "load_cases", "run_cases"]


@dataclass(frozen=True, slots=True)
class GoldenCase:
    name: str
    gate: str
    input: Mapping[str, Any]
    want: tuple[Mapping[str, str], ...]
    file: str = ""
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: GoldenCase
    passed: bool
    got: tuple[dict[str, str], ...]
    problem: str = ""


def load_cases(paths: Iterable[str | Path]) -> list[GoldenCase]:
    """The cases of golden files (a directory means its `tests/*.golden.json`). PolicyError if malformed."""
    cases: list[GoldenCase] = []
    for given in paths:
        path = Path(given)
        files = sorted((path / "tests").glob("*.golden.json")) if path.is_dir() else [path]
        for file in files:
            cases += _cases_of(file)
    return cases


def _cases_of(file: Path) -> list[GoldenCase]:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PolicyError(f"{file.name}: cannot be read as JSON ({err.__class__.__name__})") from None
    listed = document.get("cases") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        raise PolicyError(f'{file.name}: holds {{"cases": [...]}}')
    cases = []
    for i, raw in enumerate(listed):
        where = f"{file.name}: cases[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise PolicyError(f"{where}: a case is an object with a name")
        if raw.get("gate") not in GATES:
            raise PolicyError(f"{where} ({raw['name']}): gate must be one of {', '.join(GATES)}")
        want = raw.get("want")
        if not isinstance(raw.get("input"), dict) or not isinstance(want, list):
            raise PolicyError(f"{where} ({raw['name']}): needs an input object and a want list")
        for denial in want:
            if not isinstance(denial, dict) or not {"policy", "rule"} <= denial.keys():
                raise PolicyError(f"{where} ({raw['name']}): each wanted denial names its policy and rule")
        data = raw.get("data")
        if data is not None and not isinstance(data, dict):
            raise PolicyError(f"{where} ({raw['name']}): data, if given, is an object")
        cases.append(GoldenCase(raw["name"], raw["gate"], raw["input"], tuple(want), file.name, data))
    return cases


def run_cases(bundle: PolicyBundle, cases: Iterable[GoldenCase]) -> list[CaseResult]:
    """Each case decided by the bundle, against the denials it wants."""
    results = []
    variants: dict[str, PolicyBundle] = {}
    for case in cases:
        deciding = bundle
        if case.data:
            key = json.dumps(case.data, sort_keys=True)
            if key not in variants:
                variants[key] = PolicyBundle(bundle.modules, _merged(bundle.data, case.data))
            deciding = variants[key]
        decision = deciding.decide(case.gate, case.input)
        got = tuple(d.to_json() for d in decision.denials)
        wanted = {(w["policy"], w["rule"]) for w in case.want}
        found = {(d["policy"], d["rule"]) for d in got}
        problem = ""
        if found != wanted:
            missing = sorted(wanted - found)
            extra = sorted(found - wanted)
            problem = "; ".join(
                part
                for part in (
                    f"not denied by {', '.join(f'{p}.{r}' for p, r in missing)}" if missing else "",
                    f"also denied by {', '.join(f'{p}.{r}' for p, r in extra)}" if extra else "",
                )
                if part
            )
        else:
            reasons = {(d["policy"], d["rule"]): d["reason"] for d in got}
            for w in case.want:
                if "reason" in w and reasons[(w["policy"], w["rule"])] != w["reason"]:
                    problem = (
                        f"{w['policy']}.{w['rule']} said {reasons[(w['policy'], w['rule'])]!r}, not {w['reason']!r}"
                    )
        results.append(CaseResult(case, not problem, got, problem))
    return results


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged
