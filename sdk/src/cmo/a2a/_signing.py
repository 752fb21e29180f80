"""HMAC-SHA256 signatures over the canonical envelope, with key ids so that keys can rotate."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from cmo.a2a._envelope import Envelope
from cmo.a2a.errors import RejectedEnvelope
from cmo.serialization import canonical_json

__all__ = ["SIGNATURE_ALG", "HmacKeys"]

SIGNATURE_ALG = "HMAC-SHA256"
MIN_SECRET_BYTES = 32
"""A shorter secret is refused: HMAC-SHA256's strength is its key's."""


class HmacKeys:
    """The secrets an agent signs and verifies with, by key id; `current` signs.

    Rotation: add the new key beside the old, make it current on every sender, then drop the old
    once nothing signed with it can still arrive (the replay window).
    """

    def __init__(self, keys: Mapping[str, bytes], *, current: str) -> None:
        if current not in keys:
            raise ValueError(f"the current key {current!r} is not among the keys")
        for kid, secret in keys.items():
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(f"key {kid!r} has {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
        self._keys = dict(keys)
        self.current = current

    def sign(self, envelope: Envelope) -> Envelope:
        """The envelope with `meta.signature` by the current key."""
        value = _mac(self._keys[self.current], envelope)
        return envelope.with_signature({"alg": SIGNATURE_ALG, "kid": self.current, "value": value})

    def verify(self, envelope: Envelope) -> None:
        """Raise RejectedEnvelope (`missing_signature`, `unknown_key`, `bad_signature`) unless it verifies."""
        signature = envelope.meta.signature
        if signature is None:
            raise RejectedEnvelope("missing_signature", "the envelope is not signed")
        secret = self._keys.get(signature["kid"])
        if secret is None:
            raise RejectedEnvelope("unknown_key", f"no key {signature['kid'][:64]!r}")
        if not hmac.compare_digest(_mac(secret, envelope), signature["value"]):
            raise RejectedEnvelope("bad_signature", f"the signature by key {signature['kid'][:64]!r} does not match")


def signed_bytes(envelope: Envelope) -> bytes:
    """What is signed: the canonical JSON of the envelope without `meta.signature`."""
    document = envelope.to_json()
    document["meta"].pop("signature", None)
    return canonical_json(document)


def _mac(secret: bytes, envelope: Envelope) -> str:
    digest = hmac.new(secret, signed_bytes(envelope), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
