"""What each gate rule of a policy reads, found in its source, so that each can be cached on its own.

A policy's `deny_<gate>` is usually written as several rules (`deny_step_before contains ... if`),
each reading a little of the input: the run id, the step index, the graph. Cached as one, a
decision changes whenever any of them does (every step); cached rule by rule, all but the rules
whose reads changed come from the cache. So the bundle renames the gate rules of a policy it can
split (`deny_step_before__0`, `__1`, ...; `deny_step_before` stays, as their union), and finds, for
each, the input paths read by it and by the helper rules it names, transitively.

The analysis is textual and conservative: a policy whose gate rules it cannot split (another head
than `deny_<gate> contains`, say) stays one unit; a rule that may read what the text does not show
(all of `input`, another package's rules) reads "everything" (None).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Unit", "input_paths", "masked", "not_pure", "split_policies"]

Paths = frozenset[tuple[str, ...]]

_NOT_PURE = re.compile(r"\b(time\.now_ns|rand\.intn|uuid\.rfc4122|http\.send|opa\.runtime|net\.lookup)")
_INPUT = re.compile(r"\binput\b((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_COMMENT = re.compile(r"#[^\n]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')
_PACKAGE = re.compile(r"^\s*package\s+cmo\.policies\.([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)
_NAME = re.compile(r"(?:default\s+)?([A-Za-z_][A-Za-z0-9_]*)")
_IDENTIFIER = re.compile(r"(?<![.\w])([A-Za-z_][A-Za-z0-9_]*)")
_OTHER_PACKAGES = re.compile(r"\bdata\.cmo\b|^\s*import\s+data\.", re.MULTILINE)
_NOT_RULES = frozenset({"package", "import", "else"})


@dataclass(frozen=True, slots=True)
class Unit:
    """What the bundle evaluates and caches as one: one gate rule of a policy, or all of them."""

    policy: str
    gate: str
    rule: str
    """The rule's name in the policy's package: `deny_<gate>__<n>`, or `deny_<gate>` unsplit."""
    reads: Paths | None
    """The input paths it reads (None: possibly all of the input)."""
    pure: bool
    """Whether its answer depends on its input alone (not on the clock, chance or the network)."""


def masked(source: str) -> str:
    """`source` with its comments and string literals blanked out, every offset kept."""
    blank = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', source)
    return _COMMENT.sub(lambda m: " " * len(m.group()), blank)


def not_pure(source: str) -> bool:
    return _NOT_PURE.search(masked(source)) is not None


def input_paths(texts: Iterable[str]) -> Paths | None:
    """The input paths the (masked) texts read; None when one reads `input` as a whole."""
    paths: set[tuple[str, ...]] = set()
    for text in texts:
        for match in _INPUT.finditer(text):
            path = tuple(part for part in match.group(1).split(".") if part)
            if not path:
                return None  # `input` itself, or indexed by an expression: all of it
            paths.add(path)  # `input.a[x]` reads all of input.a, which the path covers
    return frozenset(paths)


@dataclass(frozen=True, slots=True)
class _Statement:
    name: str
    start: int
    end: int


def _statements(text: str) -> list[_Statement]:
    """The top-level statements of a masked module: each starts on a line at nesting depth 0."""
    starts: list[tuple[int, str]] = []
    depth = 0
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if depth == 0 and stripped and (found := _NAME.match(stripped)) is not None:
            name = found.group(1)
            if name != "else":  # `else` continues the rule above it
                starts.append((offset, name))
        for char in line:
            if char in "{[(":
                depth += 1
            elif char in "}])":
                depth = max(0, depth - 1)
        offset += len(line)
    bounds = [start for start, _ in starts] + [len(text)]
    return [_Statement(name, bounds[i], bounds[i + 1]) for i, (_, name) in enumerate(starts)]


def split_policies(
    modules: Mapping[str, str], gates: Iterable[str]
) -> tuple[dict[str, str], dict[str, dict[str, list[Unit]]]]:
    """The modules with each splittable policy's gate rules renamed, and the units by policy and gate.

    A policy (package `cmo.policies.<name>`, possibly across files) is split when each of its
    definitions of a `deny_<gate>` is a `deny_<gate> contains` rule.
    """
    gate_rules = {f"deny_{gate}": gate for gate in gates}
    by_policy: dict[str, list[str]] = {}
    for file, source in modules.items():
        if (found := _PACKAGE.search(masked(source))) is not None:
            by_policy.setdefault(found.group(1), []).append(file)
    rewritten = dict(modules)
    units: dict[str, dict[str, list[Unit]]] = {}
    for policy, files in sorted(by_policy.items()):
        texts = {file: masked(modules[file]) for file in files}
        statements = {file: _statements(texts[file]) for file in files}
        every = [(file, s) for file in files for s in statements[file] if s.name not in _NOT_RULES]
        whole = input_paths(texts.values())
        pure = not any(_NOT_PURE.search(t) for t in texts.values())
        present = sorted({s.name for _, s in every if s.name in gate_rules})
        # Another package's rules may read anything of the input.
        elsewhere = any(_OTHER_PACKAGES.search(t) for t in texts.values())
        splittable = not elsewhere and all(
            re.match(rf"\s*{s.name}\s+contains\b", texts[file][s.start : s.end])
            for file, s in every
            if s.name in gate_rules
        )
        units[policy] = {}
        if not splittable:
            for name in present:
                reads = None if elsewhere else whole
                units[policy][gate_rules[name]] = [Unit(policy, gate_rules[name], name, reads, pure)]
            continue
        # Every rule by name, gate rules too: one gate rule may refer to another.
        helpers: dict[str, list[str]] = {}
        for file, s in every:
            helpers.setdefault(s.name, []).append(texts[file][s.start : s.end])
        renames: dict[str, list[tuple[int, str, str]]] = {file: [] for file in files}
        for name in present:
            gate = gate_rules[name]
            definitions = [(file, s) for file, s in every if s.name == name]
            for n, (file, s) in enumerate(definitions):
                # Without its head, which names every rule of the gate.
                body = texts[file][s.start : s.end].lstrip()[len(name) :]
                closure = _closure(body, helpers)
                renamed = f"{name}__{n}"
                renames[file].append((s.start, name, renamed))
                unit_pure = not any(_NOT_PURE.search(t) for t in closure)
                units[policy].setdefault(gate, []).append(Unit(policy, gate, renamed, input_paths(closure), unit_pure))
        for file in files:
            source = modules[file]
            for start, name, renamed in sorted(renames[file], reverse=True):
                at = source.index(name, start)
                source = source[:at] + renamed + source[at + len(name) :]
            rewritten[file] = source
        # The gate rules as the policy wrote them, for anything that refers to them.
        first = files[0]
        union = [
            f"\n{name} contains d if {{\n\tsome d in {name}__{n}\n}}\n"
            for name in present
            for n in range(sum(1 for _, s in every if s.name == name))
        ]
        rewritten[first] = rewritten[first].rstrip("\n") + "\n" + "".join(union)
    return rewritten, units


def _closure(body: str, helpers: Mapping[str, list[str]]) -> list[str]:
    """The texts of a rule and of every helper rule it names, directly or through another."""
    seen: set[str] = set()
    texts = [body]
    pending = [body]
    while pending:
        for name in _IDENTIFIER.findall(pending.pop()):
            if name in helpers and name not in seen:
                seen.add(name)
                texts.extend(helpers[name])
                pending.extend(helpers[name])
    return texts
