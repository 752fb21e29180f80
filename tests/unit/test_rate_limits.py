"""Token buckets by namespace: a burst, then a refusal that says how long to wait; refilled at the
rate; each namespace its own; the number of buckets bounded."""

from __future__ import annotations

import pytest

from cmo_server.domain import Namespace
from cmo_server.ratelimit import NamespaceRates

ACME = Namespace("acme", "web")
GLOBEX = Namespace("globex", "web")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_a_call_waits_for_the_next_token():
    clock = Clock()
    rates = NamespaceRates(10, 3, clock=clock)
    assert [rates.admit(ACME) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rates.admit(ACME) == pytest.approx(0.1)
    clock.now += 0.05
    assert rates.admit(ACME) == pytest.approx(0.05)  # half a token refilled; a refusal takes none
    clock.now += 0.05
    assert rates.admit(ACME) == 0.0
    assert rates.admit(ACME) == pytest.approx(0.1)


def test_a_quiet_namespace_refills_to_its_burst_and_no_further():
    clock = Clock()
    rates = NamespaceRates(2, 2, clock=clock)
    rates.admit(ACME)
    rates.admit(ACME)
    clock.now += 3600
    assert [rates.admit(ACME) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_each_namespace_has_its_own_bucket():
    rates = NamespaceRates(1, 1, clock=Clock())
    assert rates.admit(ACME) == 0.0
    assert rates.admit(ACME) > 0
    assert rates.admit(GLOBEX) == 0.0


def test_the_buckets_are_bounded_and_a_forgotten_namespace_starts_full():
    rates = NamespaceRates(1, 1, clock=Clock(), max_namespaces=2)
    for tenant in ("a", "b", "c"):
        assert rates.admit(Namespace(tenant, "p")) == 0.0
    assert rates.admit(Namespace("a", "p")) == 0.0  # its bucket was dropped, so it is full again
    assert rates.admit(Namespace("c", "p")) > 0


def test_a_rate_limit_needs_a_rate_and_a_burst():
    with pytest.raises(ValueError, match="positive rate"):
        NamespaceRates(0, 1)
    with pytest.raises(ValueError, match="burst of at least 1"):
        NamespaceRates(1, 0)
