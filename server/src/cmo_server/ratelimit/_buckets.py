"""Token buckets by namespace, bounded in number."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from cmo_server.domain import Namespace

__all__ = ["NamespaceRates"]

MAX_NAMESPACES = 100_000
"""Buckets kept; the least recently used goes first (it would be full again by now anyway)."""


class NamespaceRates:
    """`rate` calls per second for each namespace, `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_namespaces: int = MAX_NAMESPACES,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_namespaces
        self._buckets: collections.OrderedDict[Namespace, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def admit(self, namespace: Namespace) -> float:
        """Take a call from the namespace's bucket: 0.0 if it had one, else the seconds until it will."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(namespace, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            wait = 0.0
            if tokens >= 1.0 - 1e-9:  # refills add up in floating point: 0.5 + 0.5 may fall short of 1
                tokens = max(0.0, tokens - 1.0)
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[namespace] = (tokens, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return wait
