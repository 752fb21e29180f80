"""What other servers on the database do, pushed by LISTEN/NOTIFY (triggers of migration 0007).

One connection per server, outside the pool, listens on three channels: `cmo_task_ready` (a task
of "queue<TAB>graph key<TAB>epoch" is claimable from that time), `cmo_wait_set` (a wait times out
at an epoch) and `cmo_run_ended` (the run "namespace<TAB>run_id" has ended). A
server hears its own notifications too; those from its own pool's sessions are dropped (the
engine has woken its pollers already), so a local checkpoint does not wake a second poller.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import psycopg

from cmo_server.domain import Namespace
from cmo_server.store._protocol import ReadyListener

__all__ = ["RUN_ENDED", "TASK_READY", "WAIT_SET", "PostgresNotifications"]

logger = logging.getLogger(__name__)

TASK_READY = "cmo_task_ready"
WAIT_SET = "cmo_wait_set"
RUN_ENDED = "cmo_run_ended"
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to listen again after the connection broke (the last one repeats)."""


class PostgresNotifications:
    """The `watch` part of `PostgresStore`."""

    _url: str
    _own_pids: set[int]
    """Backend pids of this store's pool sessions, whose notifications are this server's own."""

    async def watch(self, listener: ReadyListener) -> None:
        """See `Store.watch`: listens until cancelled, reconnecting when the connection breaks."""
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {TASK_READY}")
                    await conn.execute(f"LISTEN {WAIT_SET}")
                    await conn.execute(f"LISTEN {RUN_ENDED}")
                    failures = 0
                    listener.push_started()
                    async for note in conn.notifies():
                        if note.pid not in self._own_pids:
                            _deliver(listener, note.channel, note.payload)
            except psycopg.Error as err:
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                if failures == 0:
                    logger.warning("lost the notification connection (%s); sweeping until it is back", err)
                failures += 1
            else:
                delay = RECONNECT_DELAYS[0]  # the server ended the stream without an error
            listener.push_stopped()
            await asyncio.sleep(delay)


def _deliver(listener: ReadyListener, channel: str, payload: str) -> None:
    try:
        if channel == TASK_READY:
            task_queue, graph_key, epoch = payload.split("\t")
            listener.task_ready(task_queue, graph_key, datetime.fromtimestamp(float(epoch), UTC))
        elif channel == WAIT_SET:
            listener.wait_scheduled(datetime.fromtimestamp(float(payload), UTC))
        elif channel == RUN_ENDED:
            namespace, run_id = payload.split("\t")
            listener.run_ended(Namespace.parse(namespace), run_id)
    except ValueError:
        logger.warning("ignored a malformed %s notification: %r", channel, payload)
