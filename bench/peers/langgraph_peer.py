"""LangGraph (in-process library) running the bench's graphs as StateGraphs with `AsyncPostgresSaver`.

With `durability="sync"` LangGraph writes each step's checkpoint to Postgres before it starts the
next step (its default, "async", writes it while the next step runs).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from bench.graphs import CHAIN_STEPS
from bench.peers.drive import PeerRuns

__all__ = ["running_langgraph"]

POOL_SIZE = 8
"""The saver's connection pool, as CMO's server gets by default (CMO_POOL_SIZE)."""
DURABILITY = "sync"


class ThreeStepState(TypedDict, total=False):
    n: int
    begun: bool
    total: int
    done: bool


class ChainState(TypedDict):
    i: int
    steps: int


# Coroutines, as CMO's and DBOS's steps are: LangGraph runs a plain function node on a thread.
async def _begin(state: ThreeStepState) -> ThreeStepState:
    return {"begun": True}


async def _compute(state: ThreeStepState) -> ThreeStepState:
    return {"total": sum(i * i for i in range(state.get("n", 100)))}


async def _finish(state: ThreeStepState) -> ThreeStepState:
    return {"done": True}


async def _step(state: ChainState) -> dict[str, Any]:
    return {"i": state["i"] + 1}


def _again(state: ChainState) -> str:
    return "step" if state["i"] < state["steps"] else END


def _graphs(saver: AsyncPostgresSaver) -> tuple[Any, Any]:
    three: StateGraph[ThreeStepState] = StateGraph(ThreeStepState)
    three.add_node("begin", _begin)
    three.add_node("compute", _compute)
    three.add_node("finish", _finish)
    three.add_edge(START, "begin")
    three.add_edge("begin", "compute")
    three.add_edge("compute", "finish")
    three.add_edge("finish", END)
    chain: StateGraph[ChainState] = StateGraph(ChainState)
    chain.add_node("step", _step)
    chain.add_edge(START, "step")
    chain.add_conditional_edges("step", _again, ["step", END])
    return three.compile(checkpointer=saver), chain.compile(checkpointer=saver)


@contextlib.asynccontextmanager
async def running_langgraph(database_url: str) -> AsyncIterator[PeerRuns]:
    """The two graphs compiled with a Postgres saver on `database_url` (tables made by `setup`)."""
    # The settings the saver's own `from_conn_string` uses, on a pool so that concurrent runs do not queue on one
    # connection.
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        database_url,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        kwargs=kwargs,
        open=False,
        connection_class=AsyncConnection[DictRow],
    ) as pool:
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        three, chain = _graphs(saver)

        def thread() -> dict[str, Any]:
            return {"configurable": {"thread_id": uuid.uuid4().hex}, "recursion_limit": CHAIN_STEPS + 10}

        async def three_step_run() -> None:
            result = await three.ainvoke({"n": 100}, thread(), durability=DURABILITY)
            if not result.get("done"):
                raise RuntimeError(f"three-step graph ended without finishing: {result}")

        async def chain_run() -> None:
            result = await chain.ainvoke({"i": 0, "steps": CHAIN_STEPS}, thread(), durability=DURABILITY)
            if result.get("i") != CHAIN_STEPS:
                raise RuntimeError(f"chain stopped at step {result.get('i')}")

        yield PeerRuns(
            three_step_run,
            chain_run,
            f"LangGraph StateGraph, AsyncPostgresSaver on a pool of {POOL_SIZE}, durability={DURABILITY!r}",
        )
