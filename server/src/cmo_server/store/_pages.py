"""Opaque page tokens for listing runs newest first."""

from __future__ import annotations

import base64

from cmo_server.errors import InvalidArgument

__all__ = ["decode_run_page_token", "encode_run_page_token"]

MAX_MICROSECONDS = 2**62
"""Beyond any real timestamp, within a 64-bit integer."""
MAX_TOKEN_LENGTH = 1024
"""Longer than any token issued: base64 of the microseconds, a colon and a run id (128 characters,
up to 512 bytes of UTF-8)."""


def encode_run_page_token(created_us: int, run_id: str) -> str:
    """Token of the page that starts after this run."""
    return base64.urlsafe_b64encode(f"{created_us}:{run_id}".encode()).decode()


def decode_run_page_token(token: str) -> tuple[int, str]:
    """(created_at in µs, run_id) of the last run of the previous page."""
    created_us, run_id = -1, ""
    if len(token) <= MAX_TOKEN_LENGTH:
        try:
            created, _, run_id = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
            created_us = int(created)
        except ValueError:
            created_us = -1
    # An issued token holds a run id as stored, never with a NUL (or another control character)
    # that a forged one could carry into a query.
    if not (0 <= created_us < MAX_MICROSECONDS and run_id.isprintable()):
        raise InvalidArgument("page_token", "is not a token this server issued")
    return created_us, run_id
