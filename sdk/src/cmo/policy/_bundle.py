"""A directory of Rego v1 policies and their data, built once into a bundle and evaluated in-process.

A policy is a module whose package is `cmo.policies.<name>`; for each gate it may define a set
`deny_<gate>` of `{"rule": ..., "reason": ...}` objects. The bundle adds one module of its own,
`cmo.gates`, that gathers every policy's denials of a gate with the policy's name, and that turns a
rule of the wrong shape (old v0 syntax makes an object of what was meant as a set) into a denial
of its own: a policy that cannot say "allow" correctly says "deny".
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmo.policy._interpreter import hold_gil
from cmo.policy._rules import Unit, masked, split_policies

__all__ = ["GATES", "Decision", "Denial", "PolicyBundle", "PolicyError"]

logger = logging.getLogger(__name__)

GATES = ("step_before", "step_after", "registration", "a2a_send", "a2a_receive")
"""Where a decision is asked for: before a step is dispatched and after it completes, on agent
registration, and on each A2A message sent and received."""

CACHE_SIZE = 4096
"""Decisions kept by input, when no policy reads the clock or anything else that changes."""


class PolicyError(Exception):
    """A bundle that cannot be loaded or built: the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Denial:
    """One rule of one policy that refused."""

    policy: str
    rule: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policies said about one input at one gate."""

    gate: str
    denials: tuple[Denial, ...]
    bundle_hash: str
    elapsed: float = 0.0
    """Seconds spent in the interpreter (0 for a decision taken from the cache)."""
    evaluated: int = 0
    """How many of the gate's rules were evaluated; the others' answers came from the cache."""

    @property
    def allowed(self) -> bool:
        return not self.denials

    @property
    def denial(self) -> Denial | None:
        """The first denial (in policy, rule order), if any."""
        return self.denials[0] if self.denials else None


def _gate_module(units: Mapping[str, list[Unit]]) -> str:
    """The `cmo.gates` module: per gate, an object of every unit's rule by the unit's index.

    Only for a decision of which several units are not in the cache: one query instead of one per
    unit. A unit is asked on its own by its rule's path. Each rule is named outright: iterating
    over `data.cmo.policies` instead would make the interpreter evaluate every rule of every
    policy on each decision (measured: 10x slower).
    """
    lines = ["package cmo.gates", "", "import rego.v1", ""]
    for gate in GATES:
        found = units.get(gate, [])
        if not found:
            lines.append(f"{gate} := {{}}")
        for i, unit in enumerate(found):
            lines.append(f'{gate}["{i}"] := data.cmo.policies.{unit.policy}.{unit.rule}')
        lines.append("")
    return "\n".join(lines)


def _entrypoint(unit: Unit) -> str:
    return f"cmo/policies/{unit.policy}/{unit.rule}"


def _denials(unit: Unit, value: Any) -> tuple[Denial, ...]:
    """A unit's rule's value as denials; a rule of the wrong shape is a denial of its own.

    Old v0 syntax makes an object of what was meant as a set, and a rule that is not defined says
    nothing: a policy that cannot say "allow" correctly says "deny".
    """
    rule = f"deny_{unit.gate}"
    if not isinstance(value, list):
        reason = f"{rule} is not a set (write Rego v1: `{rule} contains {{...}} if {{...}}`)"
        return (Denial(unit.policy, "malformed_rule", reason),)
    found = set()
    for member in value:
        if isinstance(member, dict) and isinstance(member.get("rule"), str) and isinstance(member.get("reason"), str):
            found.add(Denial(unit.policy, member["rule"], member["reason"]))
        else:
            reason = f"each member of {rule} must be an object with a string rule and reason"
            found.add(Denial(unit.policy, "malformed_rule", reason))
    return tuple(found)


def _pruned(value: Mapping[str, Any], paths: frozenset[tuple[str, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        source: Any = value
        for part in path[:-1]:
            source = source.get(part) if isinstance(source, Mapping) else None
            if source is None:
                break
        if not isinstance(source, Mapping) or path[-1] not in source:
            continue
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        if isinstance(target, dict) and path[-1] not in target:
            target[path[-1]] = source[path[-1]]
    return out


def _deep_merge(into: dict[str, Any], more: Mapping[str, Any], origin: str, path: str = "") -> None:
    for key, value in more.items():
        here = f"{path}.{key}" if path else key
        if key in into and isinstance(into[key], dict) and isinstance(value, Mapping):
            _deep_merge(into[key], value, origin, here)
        elif key in into:
            raise PolicyError(f"{origin}: data.{here} is also set by another data file")
        else:
            into[key] = value


Paths = tuple[tuple[str, ...], ...]

_FAILED = object()
"""What `_query` answers when the interpreter failed (logged)."""


class PolicyBundle:
    """Policies and data built once; `decide` asks one gate about one input, failing closed."""

    def __init__(
        self, modules: Mapping[str, str], data: Mapping[str, Any] | None = None, *, cache: bool = True
    ) -> None:
        """Build from module sources by file name and the base data. PolicyError if they do not build.

        `cache=False` evaluates every decision in full (to compare with, or to measure).
        """
        import regopy

        hold_gil()

        self.modules = dict(modules)
        self.data = dict(data or {})
        digest = hashlib.sha256()
        for name in sorted(self.modules):
            digest.update(f"{name}\0{self.modules[name]}\0".encode())
        digest.update(json.dumps(self.data, sort_keys=True).encode())
        self.hash = digest.hexdigest()
        self.rules = _rules(self.modules)
        self.policies = tuple(sorted(self.rules))
        rewritten, by_policy = split_policies(self.modules, GATES)
        units: dict[str, list[Unit]] = {}
        for name in self.policies:
            for gate, found in by_policy.get(name, {}).items():
                units.setdefault(gate, []).extend(found)
        try:
            self._bundle = _build(regopy, rewritten, self.data, units)
        except PolicyError:
            # Whatever the split got wrong, the policies as written decide (and name their errors).
            units = _unsplit(units)
            self._bundle = _build(regopy, self.modules, self.data, units)
            logger.warning("the policies' rules could not be cached one by one: each policy is cached as a whole")
        self._units = {gate: tuple(units.get(gate, ())) for gate in GATES}
        self._paths_of = {
            gate: tuple(None if u.reads is None else tuple(sorted(u.reads)) for u in self._units[gate])
            for gate in GATES
        }
        self._gate_reads = {gate: _union(u.reads for u in self._units[gate]) for gate in GATES}
        paths = _union(u.reads for found in self._units.values() for u in found)
        self._tops = None if paths is None else frozenset(path[0] for path in paths)
        self._caches: dict[str, tuple[collections.OrderedDict[tuple[Any, ...], tuple[Denial, ...]] | None, ...]] = {
            gate: tuple(collections.OrderedDict() if cache and u.pure else None for u in self._units[gate])
            for gate in GATES
        }
        self._interpreter = regopy.Interpreter()
        self._rego_error = regopy.RegoError
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: str | Path, *, cache: bool = True) -> PolicyBundle:
        """The `*.rego` files and JSON data files of a directory (not its `tests/`, nor `*.golden.json`)."""
        root = Path(directory)
        if not root.is_dir():
            raise PolicyError(f"{root}: not a directory of policies")
        modules: dict[str, str] = {}
        data: dict[str, Any] = {}
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if not path.is_file() or relative.parts[0] == "tests" or path.name.endswith(".golden.json"):
                continue
            if path.suffix == ".rego":
                modules[str(relative)] = _read(path)
            elif path.suffix == ".json":
                try:
                    loaded = json.loads(_read(path))
                except ValueError as err:
                    raise PolicyError(f"{relative}: not JSON ({err})") from None
                if not isinstance(loaded, dict):
                    raise PolicyError(f"{relative}: a data file holds a JSON object")
                _deep_merge(data, loaded, str(relative))
        if not modules:
            raise PolicyError(f"{root}: no .rego files")
        return cls(modules, data, cache=cache)

    def reads(self, key: str) -> bool:
        """Whether some policy reads `input.<key>` (a caller need not build what none reads)."""
        return self._tops is None or key in self._tops

    def decide(self, gate: str, input: Mapping[str, Any]) -> Decision:
        """The decision of `gate` on `input`: every policy's denials.

        Each unit (a policy's gate rule, see `_rules`) is answered from its cache when what it
        reads is what it read before; the rest are evaluated in one query. Fails closed: when the
        policies cannot be evaluated on it, the bundle denies (`cmo.evaluation_error`).
        """
        if gate not in GATES:
            raise ValueError(f"unknown gate {gate!r} (one of {', '.join(GATES)})")
        units, caches, paths = self._units[gate], self._caches[gate], self._paths_of[gate]
        parts: dict[tuple[str, ...], Any] = {}
        denials: list[Denial] = []
        missing: list[tuple[int, tuple[Any, ...] | None]] = []
        for i, cache in enumerate(caches):
            if cache is None:
                missing.append((i, None))
                continue
            key = _key(input, paths[i], parts)
            if (hit := cache.get(key)) is None:
                missing.append((i, key))
            else:
                denials.extend(hit)
        elapsed = 0.0
        if missing:
            started = time.perf_counter()
            if len(missing) == 1:
                ((i, _),) = missing
                found = self._evaluate(units[i], _document(input, units[i].reads))
                answers = None if found is None else {i: found}
            else:
                answers = self._evaluate_all(gate, _document(input, self._gate_reads[gate]))
            elapsed = time.perf_counter() - started
            if answers is None:
                return Decision(gate, (_EVALUATION_ERROR,), self.hash, elapsed, len(missing))
            for i, missed in missing:
                answer = answers.get(i, ())
                denials.extend(answer)
                kept = caches[i]
                if kept is not None and missed is not None:
                    kept[missed] = answer
                    if len(kept) > CACHE_SIZE:
                        kept.popitem(last=False)
        return Decision(gate, tuple(sorted(set(denials), key=_order)), self.hash, elapsed, len(missing))

    def _evaluate_all(self, gate: str, document: Mapping[str, Any]) -> dict[int, tuple[Denial, ...]] | None:
        """Every unit's denials of `gate`, by unit (None if the policies could not be evaluated)."""
        value = self._query(f"cmo/gates/{gate}", document, undefined_is={})
        if not isinstance(value, dict):
            return None
        # A unit whose rule is not defined is missing from the object.
        return {i: _denials(unit, value.get(str(i))) for i, unit in enumerate(self._units[gate])}

    def _evaluate(self, unit: Unit, document: Mapping[str, Any]) -> tuple[Denial, ...] | None:
        value = self._query(_entrypoint(unit), document, undefined_is=None)
        return None if value is _FAILED else _denials(unit, value)

    def _query(self, entrypoint: str, document: Mapping[str, Any], *, undefined_is: Any) -> Any:
        """The value of `entrypoint` on `document`; `undefined_is` when it is not defined; `_FAILED`."""
        try:
            with self._lock:
                self._interpreter.set_input(document)
                output = self._interpreter.query_bundle_entrypoint(self._bundle, entrypoint)
                # The Output has parsed the interpreter's JSON already (and raised if it was not).
                ok = output.ok()
                results = output.results if ok else None
        except (self._rego_error, ValueError) as err:
            logger.error("policy %s failed to evaluate: %s", entrypoint, _first_error(err))
            return _FAILED
        if not ok:
            logger.error("policy %s failed to evaluate: %s", entrypoint, _first_error(Exception(str(output))))
            return _FAILED
        if not results:
            return undefined_is
        expressions = results[0].expressions
        if not (isinstance(expressions, list) and len(expressions) == 1):
            logger.error("policy %s answered %r instead of one value", entrypoint, expressions)
            return _FAILED
        return expressions[0]


_EVALUATION_ERROR = Denial("cmo", "evaluation_error", "the policies could not be evaluated (see the log)")
_ABSENT = object()


def _order(denial: Denial) -> tuple[str, str, str]:
    return (denial.policy, denial.rule, denial.reason)


def _document(input: Mapping[str, Any], reads: frozenset[tuple[str, ...]] | None) -> dict[str, Any]:
    """What the interpreter is handed: only the parts read, as its cost grows with its input."""
    return dict(input) if reads is None else _pruned(input, reads)


def _key(input: Mapping[str, Any], paths: Paths | None, parts: dict[tuple[str, ...], Any]) -> tuple[Any, ...]:
    """The cache key of a unit: the values at the paths it reads (`parts` keeps them for one decision)."""
    if paths is None:
        return (_frozen(input),)
    key = []
    for path in paths:
        part = parts.get(path, _ABSENT)
        if part is _ABSENT:
            value: Any = input
            for name in path:
                # `type(...) is dict` first: an ABC's isinstance costs more than the lookup.
                value = value.get(name, _ABSENT) if type(value) is dict or isinstance(value, Mapping) else _ABSENT
                if value is _ABSENT:
                    break
            part = parts[path] = value if value is _ABSENT else _frozen(value)
        key.append(part)
    return tuple(key)


def _frozen(value: Any) -> Any:
    """`value` made hashable, and 1, 1.0, true and "1" kept apart as the policies keep them apart."""
    kind = type(value)
    if kind is str:
        return value
    if kind is list or kind is tuple:
        return (list, tuple(map(_frozen, value)))
    if kind is dict or isinstance(value, Mapping):
        return (dict, tuple(sorted((str(k), _frozen(v)) for k, v in value.items())))
    if value is None or kind is bool or kind is int or kind is float:
        return (kind, value)
    return (str, str(value))  # as JSON would show it to the interpreter


def _unsplit(units: Mapping[str, list[Unit]]) -> dict[str, list[Unit]]:
    """One unit per policy and gate: its `deny_<gate>` as written."""
    whole: dict[str, list[Unit]] = {}
    for gate, found in units.items():
        for policy in dict.fromkeys(u.policy for u in found):
            mine = [u for u in found if u.policy == policy]
            reads = _union(u.reads for u in mine)
            whole.setdefault(gate, []).append(Unit(policy, gate, f"deny_{gate}", reads, all(u.pure for u in mine)))
    return whole


def _union(reads: Iterable[frozenset[tuple[str, ...]] | None]) -> frozenset[tuple[str, ...]] | None:
    paths: set[tuple[str, ...]] = set()
    for found in reads:
        if found is None:
            return None
        paths |= found
    return frozenset(paths)


def _build(regopy: Any, modules: Mapping[str, str], data: Mapping[str, Any], units: Mapping[str, list[Unit]]) -> Any:
    builder = regopy.Interpreter()
    entrypoints = [f"cmo/gates/{gate}" for gate in GATES]
    entrypoints += [_entrypoint(unit) for found in units.values() for unit in found]
    try:
        with _silenced():
            builder.add_data(dict(data))
            for name, source in sorted(modules.items()):
                try:
                    builder.add_module(name, source)
                except regopy.RegoError as err:
                    raise PolicyError(f"{name}: {_first_error(err)}") from None
            builder.add_module("cmo_gates.rego", _gate_module(units))
            return builder.build(None, entrypoints)
    except regopy.RegoError as err:
        raise PolicyError(f"the policies do not build: {_first_error(err)}") from None


_PACKAGE = re.compile(r"^\s*package\s+cmo\.policies\.([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)


_GATE_RULE = re.compile(r"^\s*deny_(" + "|".join(GATES) + r")\b", re.MULTILINE)


def _rules(modules: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """The gates each policy (package `cmo.policies.<name>`) has rules for."""
    rules: dict[str, set[str]] = {}
    for source in modules.values():
        text = masked(source)
        if (match := _PACKAGE.search(text)) is not None:
            rules.setdefault(match.group(1), set()).update(_GATE_RULE.findall(text))
    return {name: frozenset(gates) for name, gates in rules.items()}


_QUIET = threading.Lock()


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Stdout closed for the interpreter, which prints each compile error there as well as raising it."""
    with _QUIET:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(f"{path.name}: cannot be read ({err.__class__.__name__})") from None


def _first_error(err: BaseException) -> str:
    """The interpreter's first error message, without its AST dump."""
    text = str(err)
    found = re.search(r"\(errormsg \d+:([^)\n]*)\)", text)
    return found.group(1).strip() if found else text.strip().splitlines()[0][:300] if text.strip() else "error"
