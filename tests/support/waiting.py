"""Polling instead of sleeping: wait for a condition with a deadline, fail with the last reason."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["assert_eventually"]

T = TypeVar("T")


# Two signatures, async first: one `T | Awaitable[T]` leaves mypy unable to tell which part a
# coroutine is, and it then infers nothing. None is "not yet", so it is never what comes back.
@overload
async def assert_eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...


@overload
async def assert_eventually(
    check: Callable[[], T | None], *, timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...


async def assert_eventually(
    check: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> object:
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
