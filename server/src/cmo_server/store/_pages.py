"""Opaque page tokens for listing runs newest first and graph versions in order."""

from __future__ import annotations

import base64

from cmo_server.errors import InvalidArgument

__all__ = [
    "decode_graph_page_token",
    "decode_id_page_token",
    "decode_run_page_token",
    "encode_graph_page_token",
    "encode_id_page_token",
    "encode_run_page_token",
]

MAX_MICROSECONDS = 2**62
"""Beyond any real timestamp, within a 64-bit integer."""
MAX_TOKEN_LENGTH = 1024
"""Longer than any token issued: base64 of a number, a colon and an id (128 characters, up to 512
bytes of UTF-8)."""


def encode_run_page_token(created_us: int, run_id: str) -> str:
    """Token of the page that starts after this run."""
    return base64.urlsafe_b64encode(f"{created_us}:{run_id}".encode()).decode()


def decode_run_page_token(token: str) -> tuple[int, str]:
    """(created_at in µs, run_id) of the last run of the previous page."""
    created_us, run_id = _number_and_id(token)
    if not 0 <= created_us < MAX_MICROSECONDS:
        raise InvalidArgument("page_token", "is not a token this server issued")
    return created_us, run_id


def encode_graph_page_token(graph_id: str, version: int) -> str:
    """Token of the page of graph versions that starts after this one."""
    return base64.urlsafe_b64encode(f"{version}:{graph_id}".encode()).decode()


def decode_graph_page_token(token: str) -> tuple[str, int]:
    """(graph_id, version) of the last graph version of the previous page."""
    version, graph_id = _number_and_id(token)
    if not (0 < version < 2**31 and graph_id):
        raise InvalidArgument("page_token", "is not a token this server issued")
    return graph_id, version


def _number_and_id(token: str) -> tuple[int, str]:
    """The `<number>:<id>` a token encodes, or (-1, "") when it is no token this server issued.

    An issued token holds an id as stored, never one with a NUL (or another control character)
    that a forged token could carry into a query.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        return -1, ""
    try:
        number, _, id_ = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return (int(number), id_) if id_.isprintable() else (-1, "")
    except ValueError:
        return -1, ""


def encode_id_page_token(last_id: str) -> str:
    """Token of the page (of a listing by id) that starts after this id."""
    return base64.urlsafe_b64encode(f"0:{last_id}".encode()).decode()


def decode_id_page_token(token: str) -> str:
    """The last id of the previous page."""
    number, last_id = _number_and_id(token)
    if number != 0 or not last_id:
        raise InvalidArgument("page_token", "is not a token this server issued")
    return last_id
