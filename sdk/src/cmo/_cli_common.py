"""What every `cmoctl` command shares: where it goes, how it calls, how it prints a table."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from rich import box
from rich.table import Table

from cmo._client import Client
from cmo._tls import TLSConfig
from cmo.errors import CmoError

__all__ = ["Server", "_run", "_table"]

T = TypeVar("T")


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
    async def go() -> T:
        connecting = Client.connect(
            server.address,
            wait_ready=5.0,
            tenant=server.tenant,
            project=server.project,
            token=server.token,
            tls=False if server.tls is None else server.tls,
        )
        async with await connecting as client:
            return await action(client)

    try:
        return asyncio.run(go())
    except (CmoError, ConnectionError) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:  # a TLS file that cannot be read
        raise click.ClickException(f"cannot read a TLS file: {err}") from None


def _table(*columns: str, keep: tuple[str, ...] = ()) -> Table:
    """A table that never cuts the columns in `keep` (ids to copy); others shrink to fit."""
    table = Table(box=box.SIMPLE_HEAD)
    for name in columns:
        if name in keep:
            table.add_column(name, no_wrap=True, min_width=32)
        else:
            table.add_column(name, overflow="fold")
    return table
