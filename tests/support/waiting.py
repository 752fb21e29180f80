"""Polling instead of sleeping: wait for a condition with a deadline, fail with the last reason."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["assert_eventually"]

T = TypeVar("T")


async def assert_eventually(
    check: Callable[[], T | Awaitable[T | None] | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> T:
    """Call `check` until it returns a truthy value without raising AssertionError; return that value.

    `check` may be sync or async; returning None (or anything falsy) means "not yet". After
    `timeout` seconds the last AssertionError (or falsy result) is raised, naming `what`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: str = "the condition never held"
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = f"got {value!r}"
        except AssertionError as err:
            last = str(err) or repr(err)
        if loop.time() >= deadline:
            raise AssertionError(f"{what or 'condition'} still not true after {timeout:g}s: {last}")
        await asyncio.sleep(interval)
