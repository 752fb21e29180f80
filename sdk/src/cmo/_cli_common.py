"""What every `cmoctl` command shares: where it goes and how it calls."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from cmo._client import Client
from cmo._rpc import address_problem
from cmo._tls import TLSConfig
from cmo.errors import CmoError

__all__ = ["Server", "_run"]

T = TypeVar("T")

CONNECT_WAIT = 5.0
"""Seconds a command waits for a server that accepts the connection but does not answer yet."""


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """Where the commands go: the server's address, the namespace they name, the caller's token and TLS."""

    address: str
    tenant: str
    project: str
    token: str = ""
    tls: TLSConfig | None = None
    """None: plaintext."""


def _run(server: Server, action: Callable[[Client], Awaitable[T]]) -> T:
    if problem := address_problem(server.address):
        context = click.get_current_context(silent=True)
        raise click.BadParameter(
            problem, ctx=context.find_root() if context else None, param_hint="'--address' (or $CMO_ADDRESS)"
        )

    async def go() -> T:
        connecting = Client.connect(
            server.address,
            wait_ready=CONNECT_WAIT,
            fail_fast=True,  # a refused connection is an answer: say so now, not after CONNECT_WAIT
            tenant=server.tenant,
            project=server.project,
            token=server.token,
            tls=False if server.tls is None else server.tls,
        )
        async with await connecting as client:
            return await action(client)

    try:
        return asyncio.run(go())
    except ConnectionError as err:
        raise click.ClickException(
            f"{err}\nStart one with `cmo-server start-dev`, or name yours with --address HOST:PORT or $CMO_ADDRESS"
        ) from None
    except CmoError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:  # a TLS file that cannot be read
        raise click.ClickException(f"cannot read a TLS file: {err}") from None
