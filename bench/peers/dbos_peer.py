"""DBOS (in-process library) running the bench's graphs as workflows of `@DBOS.step`s on Postgres.

DBOS checkpoints a workflow's status and input when it starts and each step's output when the
step returns, in its system database, before the workflow goes on: durable per step by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from dbos import DBOS, DBOSConfig

from bench.graphs import CHAIN_STEPS
from bench.peers.drive import PeerRuns

__all__ = ["running_dbos"]

POOL_SIZE = 8
"""The system database's pool, as CMO's server gets by default (CMO_POOL_SIZE)."""


@DBOS.step()
async def begin(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "begun": True}


@DBOS.step()
async def compute(state: dict[str, Any]) -> dict[str, Any]:
    # The same trivial computation as the CMO graph's `compute`.
    return {**state, "total": sum(i * i for i in range(state.get("n", 100)))}


@DBOS.step()
async def finish(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "done": True}


@DBOS.workflow()
async def three_step(state: dict[str, Any]) -> dict[str, Any]:
    return await finish(await compute(await begin(state)))


@DBOS.step()
async def chain_step(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "i": state["i"] + 1}


@DBOS.workflow()
async def chain(state: dict[str, Any]) -> dict[str, Any]:
    while state["i"] < state["steps"]:
        state = await chain_step(state)
    return state


async def _three_step_run() -> None:
    handle = await DBOS.start_workflow_async(three_step, {"n": 100})
    result = await handle.get_result()
    if not result.get("done"):
        raise RuntimeError(f"workflow {handle.get_workflow_id()} ended without finishing: {result}")


async def _chain_run() -> None:
    handle = await DBOS.start_workflow_async(chain, {"i": 0, "steps": CHAIN_STEPS})
    result = await handle.get_result()
    if result.get("i") != CHAIN_STEPS:
        raise RuntimeError(f"workflow {handle.get_workflow_id()} stopped at step {result.get('i')}")


@contextlib.asynccontextmanager
async def running_dbos(database_url: str) -> AsyncIterator[PeerRuns]:
    """DBOS launched on `database_url` (its system database), destroyed afterwards."""
    config: DBOSConfig = {
        "name": "cmo-bench-peers",
        "system_database_url": database_url,
        "sys_db_pool_size": POOL_SIZE,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    try:
        DBOS.launch()
        yield PeerRuns(
            _three_step_run,
            _chain_run,
            f"DBOS, workflows of @DBOS.step, system database on Postgres, pool {POOL_SIZE}",
        )
    finally:
        DBOS.destroy()
