"""The gRPC health status follows what the server needs: its database and its blob store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import grpc
from grpc_health.v1 import health, health_pb2

__all__ = ["HealthMonitor", "HealthServicer"]

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]  # grpc_health has no types
    """grpc's health servicer, with `List` (which grpc's leaves unimplemented, raising).

    `List` answers the status of every service whose status was set before the server began to
    shut down (from then on, grpc's servicer ignores new ones), and of the server ("").
    """

    def __init__(self) -> None:
        super().__init__()
        self._services = {""}
        self._frozen = False

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        """See grpc's `HealthServicer.set`."""
        if not self._frozen:
            self._services.add(service)
        await super().set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        """See grpc's `HealthServicer.enter_graceful_shutdown`."""
        self._frozen = True
        await super().enter_graceful_shutdown()

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        """The status of every known service."""
        response = health_pb2.HealthListResponse()
        for service in sorted(self._services):
            status = await self.Check(health_pb2.HealthCheckRequest(service=service), context)
            response.statuses[service].CopyFrom(status)
        return response


class HealthMonitor:
    """Checks each dependency every `interval` seconds and sets the health of `services` to match.

    SERVING while every check passes within `timeout`, NOT_SERVING as soon as one fails (a load
    balancer or a readiness probe then sends work elsewhere), SERVING again once all pass. Changes
    are logged with the dependency that failed and why.
    """

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        services: Sequence[str],
        checks: Mapping[str, Check],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self._servicer = servicer
        self._services = list(services)
        self._checks = dict(checks)
        self._interval = interval
        self._timeout = timeout
        self._failing: dict[str, str] = {}

    @property
    def failing(self) -> dict[str, str]:
        """The dependencies whose last check failed, with why."""
        return dict(self._failing)

    async def check_now(self) -> bool:
        """Run every check once and set the status; True if all passed."""
        results = await asyncio.gather(*(self._check(name, check) for name, check in self._checks.items()))
        failing = {name: why for name, why in results if why}
        if failing != self._failing:
            if failing:
                logger.warning("not serving: %s", "; ".join(f"{n}: {w}" for n, w in sorted(failing.items())))
            else:
                logger.info("serving again: %s reachable", ", ".join(sorted(self._checks)))
        self._failing = failing
        status = NOT_SERVING if failing else SERVING
        for service in self._services:
            await self._servicer.set(service, status)
        return not failing

    async def run(self) -> None:
        """Check every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self.check_now()

    async def _check(self, name: str, check: Check) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), self._timeout)
        except TimeoutError:
            return name, f"no answer within {self._timeout:g}s"
        except Exception as err:  # any failure means the dependency is not usable
            return name, f"{type(err).__name__}: {err}"[:300]
        return name, ""
