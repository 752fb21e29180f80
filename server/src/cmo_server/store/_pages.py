"""Opaque page tokens for listing runs newest first."""

from __future__ import annotations

import base64

from cmo_server.errors import InvalidArgument

__all__ = ["decode_run_page_token", "encode_run_page_token"]


def encode_run_page_token(created_us: int, run_id: str) -> str:
    """Token of the page that starts after this run."""
    return base64.urlsafe_b64encode(f"{created_us}:{run_id}".encode()).decode()


def decode_run_page_token(token: str) -> tuple[int, str]:
    """(created_at in µs, run_id) of the last run of the previous page."""
    try:
        created, _, run_id = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(created), run_id
    except ValueError as err:
        raise InvalidArgument("page_token", "is not a token this server issued") from err
