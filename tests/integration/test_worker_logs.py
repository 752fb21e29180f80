"""The SDK worker's log records carry the run context (and the step's trace) for the application's handler."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import cmo
from cmo.errors import ApplicationError, RunFailedError
from cmo_server._logging import log_formatter
from cmo_server.app import CmoServer


async def test_a_failed_step_logs_its_run_step_attempt_and_trace(server: CmoServer):
    provider = TracerProvider()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log_formatter("json"))
    worker_logger = logging.getLogger("cmo._worker")
    worker_logger.addHandler(handler)
    level = worker_logger.level
    worker_logger.setLevel(logging.INFO)
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(f"logs-{uuid.uuid4().hex[:8]}")

    @graph.node(entry=True)
    async def refuse(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        raise ApplicationError("no", non_retryable=True)

    try:
        async with await cmo.Client.connect(f"127.0.0.1:{server.port}", tracer_provider=provider) as client:
            worker = cmo.Worker(client, [graph], poll_wait=1.0)
            running = asyncio.create_task(worker.run())
            try:
                handle = await client.start(graph, {})
                with pytest.raises(RunFailedError):
                    await handle.result(timeout=20)
            finally:
                worker.shutdown()
                await asyncio.wait_for(running, 30)
    finally:
        worker_logger.removeHandler(handler)
        worker_logger.setLevel(level)
        provider.shutdown()

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    [failed] = [line for line in lines if line.get("run_id") == handle.run_id]
    assert "failed (attempt 1)" in failed["message"]
    assert (failed["step_index"], failed["attempt"]) == (0, 1)
    assert len(failed["trace_id"]) == 32  # logged inside the step's span
    assert len(failed["span_id"]) == 16
