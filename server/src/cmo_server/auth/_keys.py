"""Token keys from a file: a JWKS document (rotation by key id), or one PEM public key or secret."""

from __future__ import annotations

import json
from pathlib import Path

import jwt

from cmo.a2a.tokens import ALLOWED_ALGORITHMS, JwtKey

__all__ = ["load_keys"]


def load_keys(path: str | Path, *, kid: str = "", algorithm: str = "") -> list[JwtKey]:
    """The keys in `path`.

    A JWKS file (`{"keys": [...]}`) gives each key with its own `kid` and `alg` (both required,
    `alg` from the allow-list; a key without them is refused rather than guessed). Any other file
    is one key: a PEM public key (RS*, ES*, EdDSA) or an HMAC secret (HS*, 32 bytes or more),
    named `kid` and verifying `algorithm`.

    Raises:
        ValueError: the file holds no usable key; the message says why, never the key.
    """
    text = Path(path).read_bytes()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        return [_jwk(entry, i) for i, entry in enumerate(document["keys"])]
    if not kid or algorithm not in ALLOWED_ALGORITHMS:
        raise ValueError("a key file that is not a JWKS needs a key id and an allowed algorithm")
    if algorithm.startswith("HS"):
        secret = text.strip()
        if len(secret) < 32:
            raise ValueError(f"the HMAC secret of key {kid!r} is shorter than 32 bytes")
        return [JwtKey(kid, algorithm, secret)]
    try:
        public = jwt.algorithms.get_default_algorithms()[algorithm].prepare_key(text)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise ValueError(f"key {kid!r}: not a PEM public key for {algorithm}") from None
    return [JwtKey(kid, algorithm, public)]


def _jwk(entry: object, index: int) -> JwtKey:
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not entry.get("alg"):
        raise ValueError(f"JWKS key {index}: needs a kid and an alg")
    algorithm = str(entry["alg"])
    if algorithm not in ALLOWED_ALGORITHMS:
        raise ValueError(f"JWKS key {entry['kid']!r}: algorithm {algorithm[:16]!r} is not allowed")
    if entry.get("kty") == "oct":
        raise ValueError(f"JWKS key {entry['kid']!r}: a shared secret does not belong in a JWKS file")
    try:
        key = jwt.PyJWK.from_dict(entry).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise ValueError(f"JWKS key {entry['kid']!r}: not a valid key") from None
    return JwtKey(entry["kid"], algorithm, key)
