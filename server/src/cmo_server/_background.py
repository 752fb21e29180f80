"""Background loops run in a task group of the object that started them; this logs one that crashes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

__all__ = ["log_crash"]

logger = logging.getLogger(__name__)


async def log_crash(what: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run `loop()`; if it raises, log that `what` crashed, with the traceback, and raise it on.

    Its task group then cancels the other loops and raises what it raised: the log says at once
    which loop it was, where the group's ExceptionGroup is only seen when its owner is closed.
    `loop` is called here, not by the caller, so that a task cancelled before it starts leaves no
    coroutine never awaited behind.
    """
    try:
        await loop()
    except Exception:
        logger.exception("%s crashed: stopping the work beside it", what)
        raise
