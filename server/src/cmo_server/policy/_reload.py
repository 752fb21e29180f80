"""Keeping the policies in force current: built again on SIGHUP and when a file of theirs changes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cmo.policy import PolicyBundle, PolicyError
from cmo_server.policy._gates import PolicyGates

__all__ = ["PolicyReloader"]

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0
"""Seconds between looks at the policy files' modification times."""


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    found = []
    for path in sorted(directory.rglob("*")):
        if path.suffix in (".rego", ".json") and path.is_file():
            stat = path.stat()
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


class PolicyReloader:
    """Builds the directory's bundle again when asked (SIGHUP) or when its files change.

    A bundle that does not build is logged and the last good one stays in force.
    """

    def __init__(self, directory: str, gates: PolicyGates, *, interval: float = CHECK_INTERVAL) -> None:
        self._directory = Path(directory)
        self._gates = gates
        self._interval = interval
        self._seen = _fingerprint(self._directory)
        self._asked = asyncio.Event()

    @property
    def bundle(self) -> PolicyBundle:
        """The bundle in force."""
        return self._gates.bundle

    def reload_now(self) -> None:
        """Ask for a reload at once (the SIGHUP handler)."""
        self._asked.set()

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            try:
                async with asyncio.timeout(self._interval):
                    await self._asked.wait()
            except TimeoutError:
                pass
            asked, self._asked = self._asked.is_set(), asyncio.Event()
            try:
                seen = await asyncio.to_thread(_fingerprint, self._directory)
            except OSError as err:
                logger.error("policies in %s cannot be read (%s): the last good bundle stays", self._directory, err)
                continue
            if asked or seen != self._seen:
                self._seen = seen
                await self.reload()

    async def reload(self) -> bool:
        """Build the bundle again; True if it replaced the one in force."""
        try:
            bundle = await asyncio.to_thread(PolicyBundle.load, self._directory)
        except PolicyError as err:
            logger.error(
                "policies not reloaded, the last good bundle (%s) stays: %s", self._gates.bundle.hash[:12], err
            )
            return False
        if bundle.hash != self._gates.bundle.hash:
            self._gates.bundle = bundle
            logger.info(
                "policies reloaded: bundle %s (%s)", bundle.hash[:12], ", ".join(bundle.policies) or "no policy"
            )
        return True
