"""Stored payloads above the inline threshold become a small manifest over content-addressed blobs.

`pack` turns a payload (canonical JSON) into what the database stores: the payload itself when it
is small, else a manifest, the payload cut into segments whose concatenation is exactly the
payload. A JSON object is cut at its top-level values: each value larger than `SEGMENT_BYTES`
becomes a blob named by its SHA-256, the bytes between such values stay inline. So a state that
keeps an unchanged 1 MiB field over 100 steps stores that field once, and each step stores only a
manifest of a few hundred bytes. Any other payload (or an object with no large value) becomes one
blob. `unpack` reverses it, reading the blobs concurrently and verified.

A manifest starts with `MANIFEST_MARKER`, whose first byte is NUL. JSON text never starts with
NUL (RFC 8259 allows only white space before a value), so a stored value is a manifest exactly
when it starts with the marker, and a small payload is stored unchanged at the cost of one length
check.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from cmo_server.blob._errors import BlobError
from cmo_server.blob._protocol import BlobRef, BlobStore

__all__ = ["MANIFEST_MARKER", "SEGMENT_BYTES", "ManifestError", "is_manifest", "manifest_digests", "pack", "unpack"]

MANIFEST_MARKER = b"\x00cmo-blobs/v1\n"
"""The first bytes of every manifest; canonical JSON never starts with NUL."""

SEGMENT_BYTES = 64 * 1024
"""Top-level values larger than this get a blob of their own; smaller ones stay inline.

Large enough that a blob's fixed costs (a file, its directory entry and fsyncs, a hash, ~90 bytes
in the manifest) are small against its size; small enough that a field of a few hundred KiB is
still deduplicated under the default 256 KiB threshold.
"""

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


class ManifestError(BlobError):
    """A stored manifest cannot be read: damaged data on the server, never a client's mistake."""

    def __init__(self, reason: str) -> None:
        super().__init__("", f"stored payload manifest is malformed: {reason}")


@dataclass(frozen=True, slots=True)
class _Span:
    """A slice of the payload: kept inline, or stored as a blob."""

    text: str
    blob: bool


def is_manifest(stored: bytes) -> bool:
    """Whether a stored value is a manifest rather than a payload kept inline."""
    return stored.startswith(MANIFEST_MARKER)


async def pack(data: bytes, blobs: BlobStore, threshold: int, *, segment_bytes: int = SEGMENT_BYTES) -> bytes:
    """What to store for `data`: `data` itself if it is at most `threshold` bytes, else a manifest.

    The blobs a manifest names are written before it is returned, so a stored manifest never
    names a blob that is not there.
    """
    if len(data) <= threshold:
        return data
    spans = _split(data, segment_bytes)
    encoded = [(span.text.encode(), span.blob) for span in spans] if spans else [(data, True)]
    # A long run of small values goes to a blob too, so a manifest stays small whatever the shape.
    to_store = [piece for piece, blob in encoded if blob or len(piece) > segment_bytes]
    refs = iter(await asyncio.gather(*(blobs.put(piece) for piece in to_store)))
    segments: list[list[Any]] = []
    for piece, blob in encoded:
        if blob or len(piece) > segment_bytes:
            ref = next(refs)
            segments.append(["b", ref.sha256, ref.size])
        elif piece:
            segments.append(["i", piece.decode()])
    return MANIFEST_MARKER + json.dumps(segments, separators=(",", ":"), ensure_ascii=False).encode()


async def unpack(stored: bytes, blobs: BlobStore) -> bytes:
    """The payload `pack` stored as `stored`, byte for byte.

    Raises:
        BlobNotFound: a blob the manifest names is missing.
        BlobCorrupted: a blob does not match its digest.
        ManifestError: the manifest itself is damaged.
    """
    if not stored.startswith(MANIFEST_MARKER):
        return stored
    segments = _parse_manifest(stored[len(MANIFEST_MARKER) :])
    reads = [blobs.get(segment) for segment in segments if isinstance(segment, BlobRef)]
    contents = iter(await asyncio.gather(*reads))
    return b"".join(next(contents) if isinstance(segment, BlobRef) else segment for segment in segments)


def manifest_digests(stored: bytes) -> list[str]:
    """The digests of the blobs a stored manifest names (none for a payload stored inline).

    Raises:
        ManifestError: the manifest is damaged.
    """
    if not stored.startswith(MANIFEST_MARKER):
        return []
    return [s.sha256 for s in _parse_manifest(stored[len(MANIFEST_MARKER) :]) if isinstance(s, BlobRef)]


def _parse_manifest(body: bytes) -> list[bytes | BlobRef]:
    try:
        raw = json.loads(body)
        if not isinstance(raw, list):
            raise ValueError("not a list of segments")
        segments: list[bytes | BlobRef] = []
        for entry in raw:
            if isinstance(entry, list) and len(entry) == 2 and entry[0] == "i" and isinstance(entry[1], str):
                segments.append(entry[1].encode())
            elif isinstance(entry, list) and len(entry) == 3 and entry[0] == "b" and isinstance(entry[2], int):
                segments.append(BlobRef(entry[1], entry[2]))
            else:
                raise ValueError(f"unknown segment {entry!r:.80}")
    except (ValueError, TypeError) as err:
        raise ManifestError(str(err)) from None
    return segments


def _split(data: bytes, segment_bytes: int) -> list[_Span] | None:
    """A JSON object cut at its top-level values larger than `segment_bytes`; None for anything else.

    Spans are found in the decoded text, so a cut never falls inside a UTF-8 sequence.
    """
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    i = _skip_whitespace(text, 0)
    if not text.startswith("{", i):
        return None
    spans: list[_Span] = []
    inline_from = 0
    ascii_only = text.isascii()  # then character offsets are byte offsets: no need to encode
    i = _skip_whitespace(text, i + 1)
    try:
        while i < len(text) and text[i] != "}":
            key, i = _DECODER.raw_decode(text, i)
            i = _skip_whitespace(text, i)
            if not isinstance(key, str) or not text.startswith(":", i):
                return None
            start = _skip_whitespace(text, i + 1)
            _, end = _DECODER.raw_decode(text, start)
            size = end - start if ascii_only else len(text[start:end].encode())
            if size > segment_bytes:
                spans.append(_Span(text[inline_from:start], blob=False))
                spans.append(_Span(text[start:end], blob=True))
                inline_from = end
            i = _skip_whitespace(text, end)
            if text.startswith(",", i):
                i = _skip_whitespace(text, i + 1)
            elif not text.startswith("}", i):
                return None
    except (ValueError, RecursionError):  # not JSON, or JSON Python will not parse (a 5000-digit number)
        return None
    if i >= len(text) or _skip_whitespace(text, i + 1) != len(text):
        return None  # unterminated, or something after the object
    if not spans:
        return None
    spans.append(_Span(text[inline_from:], blob=False))
    return spans


def _skip_whitespace(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i
