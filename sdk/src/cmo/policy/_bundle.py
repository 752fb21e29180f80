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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GATES", "Decision", "Denial", "PolicyBundle", "PolicyError"]

logger = logging.getLogger(__name__)

GATES = ("step_before", "step_after", "registration", "a2a_send", "a2a_receive")
"""Where a decision is asked for: before a step is dispatched and after it completes, on agent
registration, and on each A2A message sent and received."""

CACHE_SIZE = 4096
"""Decisions kept by input, when no policy reads the clock or anything else that changes."""

_NOT_PURE = re.compile(r"\b(time\.now_ns|rand\.intn|uuid\.rfc4122|http\.send|opa\.runtime|net\.lookup)")
_INPUT = re.compile(r"\binput\b((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(\s*\[)?")
_COMMENT = re.compile(r"#[^\n]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')


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
    """Seconds spent deciding (0 for a decision taken from the cache)."""

    @property
    def allowed(self) -> bool:
        return not self.denials

    @property
    def denial(self) -> Denial | None:
        """The first denial (in policy, rule order), if any."""
        return self.denials[0] if self.denials else None


def _gate_module(rules: Mapping[str, frozenset[str]]) -> str:
    """The `cmo.gates` module for policies by name and the gates each has rules for.

    Each policy's rule is named outright: iterating over `data.cmo.policies` instead would make
    the interpreter evaluate every rule of every policy on each decision (measured: 10x slower).
    """
    lines = ["package cmo.gates", "", "import rego.v1", ""]
    for gate in GATES:
        rule = f"deny_{gate}"
        names = sorted(n for n, gates in rules.items() if gate in gates)
        if not names:
            lines += [f"{gate} := set()", ""]
        for name in names:
            ref = f"data.cmo.policies.{name}.{rule}"
            lines += [
                "",
                f'{gate} contains object.union(d, {{"policy": "{name}"}}) if {{',
                f"\tis_set({ref})",
                f"\tsome d in {ref}",
                "\t_well_formed(d)",
                "}",
                "",
                f'{gate} contains {{"policy": "{name}", "rule": "malformed_rule", "reason": reason}} if {{',
                f"\tnot is_set({ref})",
                f'\treason := "{rule} is not a set (write Rego v1: `{rule} contains {{...}} if {{...}}`)"',
                "}",
                "",
                f'{gate} contains {{"policy": "{name}", "rule": "malformed_rule", "reason": reason}} if {{',
                f"\tsome d in {ref}",
                "\tnot _well_formed(d)",
                f'\treason := "each member of {rule} must be an object with a string rule and reason"',
                "}",
            ]
        lines.append("")
    lines += ["_well_formed(d) if {", "\tis_string(d.rule)", "\tis_string(d.reason)", "}", ""]
    return "\n".join(lines)


def _input_paths(sources: Mapping[str, str]) -> frozenset[tuple[str, ...]] | None:
    """The parts of the input the policies read (None: possibly all of it).

    Only these are handed to the interpreter, whose cost grows with the size of its input: a gate
    that reads `input.step.index` need not parse a step's whole state.
    """
    paths: set[tuple[str, ...]] = set()
    for source in sources.values():
        text = _COMMENT.sub("", _STRING.sub('""', source))
        for match in _INPUT.finditer(text):
            dotted, indexed = match.group(1), match.group(2)
            path = tuple(part for part in dotted.split(".") if part)
            if not path:
                return None  # `input` as a whole, or indexed by an expression
            paths.add(path)
            del indexed  # `input.a[x]` reads all of input.a, which the path already covers
    return frozenset(paths)


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


class PolicyBundle:
    """Policies and data built once; `decide` asks one gate about one input, failing closed."""

    def __init__(self, modules: Mapping[str, str], data: Mapping[str, Any] | None = None) -> None:
        """Build from module sources by file name and the base data. PolicyError if they do not build."""
        import regopy

        self.modules = dict(modules)
        self.data = dict(data or {})
        digest = hashlib.sha256()
        for name in sorted(self.modules):
            digest.update(f"{name}\0{self.modules[name]}\0".encode())
        digest.update(json.dumps(self.data, sort_keys=True).encode())
        self.hash = digest.hexdigest()
        self.rules = _rules(self.modules)
        builder = regopy.Interpreter()
        try:
            with _silenced():
                builder.add_data(self.data)
                for name, source in sorted(self.modules.items()):
                    try:
                        builder.add_module(name, source)
                    except regopy.RegoError as err:
                        raise PolicyError(f"{name}: {_first_error(err)}") from None
                builder.add_module("cmo_gates.rego", _gate_module(self.rules))
                self._bundle = builder.build(None, [f"cmo/gates/{gate}" for gate in GATES])
        except regopy.RegoError as err:
            raise PolicyError(f"the policies do not build: {_first_error(err)}") from None
        self._interpreter = regopy.Interpreter()
        self._rego_error = regopy.RegoError
        self._lock = threading.Lock()
        self._paths = _input_paths(self.modules)
        self._cacheable = not any(_NOT_PURE.search(source) for source in self.modules.values())
        self._cache: collections.OrderedDict[tuple[str, str], tuple[Denial, ...]] = collections.OrderedDict()
        self.policies = tuple(sorted(self.rules))

    @classmethod
    def load(cls, directory: str | Path) -> PolicyBundle:
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
        return cls(modules, data)

    def reads(self, key: str) -> bool:
        """Whether some policy reads `input.<key>` (a caller need not build what none reads)."""
        return self._paths is None or any(path[0] == key for path in self._paths)

    def decide(self, gate: str, input: Mapping[str, Any]) -> Decision:
        """The decision of `gate` on `input`: every policy's denials.

        Fails closed: when the policies cannot be evaluated on it, the bundle denies
        (`cmo.evaluation_error`).
        """
        if gate not in GATES:
            raise ValueError(f"unknown gate {gate!r} (one of {', '.join(GATES)})")
        document = dict(input) if self._paths is None else _pruned(input, self._paths)
        key = (gate, json.dumps(document, sort_keys=True, separators=(",", ":"), default=str))
        if self._cacheable and (hit := self._cache.get(key)) is not None:
            return Decision(gate, hit, self.hash)
        started = time.perf_counter()
        denials = self._evaluate(gate, document)
        elapsed = time.perf_counter() - started
        if self._cacheable:
            self._cache[key] = denials
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return Decision(gate, denials, self.hash, elapsed)

    def _evaluate(self, gate: str, document: Mapping[str, Any]) -> tuple[Denial, ...]:
        try:
            with self._lock:
                self._interpreter.set_input(document)
                output = self._interpreter.query_bundle_entrypoint(self._bundle, f"cmo/gates/{gate}")
                # The Output has parsed the interpreter's JSON already (and raised if it was not).
                result = output.results[0].expressions if output.ok() and output.results else None
        except (self._rego_error, ValueError) as err:
            logger.error("policy gate %s failed to evaluate: %s", gate, _first_error(err))
            result = None
        if not (isinstance(result, list) and len(result) == 1 and isinstance(result[0], list)):
            if result is not None:
                logger.error("policy gate %s answered %r instead of a set of denials", gate, result)
            return (Denial("cmo", "evaluation_error", "the policies could not be evaluated (see the log)"),)
        found = {
            Denial(str(d.get("policy", "")), str(d.get("rule", "")), str(d.get("reason", "")))
            for d in result[0]
            if isinstance(d, dict)
        }
        return tuple(sorted(found, key=lambda d: (d.policy, d.rule, d.reason)))


_PACKAGE = re.compile(r"^\s*package\s+cmo\.policies\.([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)


_GATE_RULE = re.compile(r"^\s*deny_(" + "|".join(GATES) + r")\b", re.MULTILINE)


def _rules(modules: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """The gates each policy (package `cmo.policies.<name>`) has rules for."""
    rules: dict[str, set[str]] = {}
    for source in modules.values():
        text = _COMMENT.sub("", _STRING.sub('""', source))
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
