"""JWTs and capability tokens on envelopes (`cmo-sdk[jwt]`): who sends, with which scopes and capabilities.

Every key is bound to one algorithm from the allow-list (`none` is never on it). A token's header
names the key by `kid`, and its `alg` must be that key's: so a token signed HS256 with an RSA
public key as the secret is refused before any signature is checked (and PyJWT would refuse the
public key as an HMAC secret too). `iss`, `aud`, `exp` and `nbf` are checked with a leeway.

Scopes are `action` or `action:resource`; a granted scope matches a required one exactly, by `*`
(everything), by `action:*`, or by a namespace prefix (`repo.write:healing/*` grants
`repo.write:healing/selectors`). A capability token is a JWT of its own listing `capabilities`,
bound to the sender (`sub`) and the recipient (`aud`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from cmo.a2a.errors import RejectedEnvelope
from cmo.a2a.scopes import grants, has_capabilities, scopes_of

__all__ = ["ALLOWED_ALGORITHMS", "JwtKey", "TokenVerifier", "grants", "has_capabilities", "scopes_of"]

ALLOWED_ALGORITHMS = frozenset({"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"})
"""What a key may be for. Never `none`."""


@dataclass(frozen=True, slots=True)
class JwtKey:
    """One verification key: its id, the one algorithm it verifies, and the key (a secret, or a public key)."""

    kid: str
    algorithm: str
    key: Any

    def __post_init__(self) -> None:
        if self.algorithm not in ALLOWED_ALGORITHMS:
            raise ValueError(f"key {self.kid!r}: algorithm {self.algorithm!r} is not allowed")


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    """Verifies the tokens an envelope carries against known keys, an issuer and an audience."""

    keys: Mapping[str, JwtKey]
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    required_claims: Sequence[str] = field(default=("exp", "sub"))

    @classmethod
    def of(cls, keys: Iterable[JwtKey], **options: Any) -> TokenVerifier:
        """A verifier of these keys (by their ids)."""
        return cls({k.kid: k for k in keys}, **options)

    def verify(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """The token's claims; RejectedEnvelope (`bad_token`, `expired_token`, …) if it does not verify."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise RejectedEnvelope("bad_token", f"not a JWT: {err}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise RejectedEnvelope("bad_token", f"algorithm {str(alg)[:32]!r} is not allowed")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise RejectedEnvelope("unknown_key", f"no token key {str(kid)[:64]!r}")
        if alg != key.algorithm:
            raise RejectedEnvelope("bad_token", f"key {key.kid!r} is for {key.algorithm}, the token says {alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=audience or self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": list(self.required_claims), "verify_aud": bool(audience or self.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise RejectedEnvelope("expired_token", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise RejectedEnvelope("bad_token", "the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise RejectedEnvelope("bad_token", "the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise RejectedEnvelope("bad_token", "the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise RejectedEnvelope("bad_token", "the token's signature does not match") from None
        except (jwt.PyJWTError, ValueError, TypeError) as err:
            raise RejectedEnvelope("bad_token", f"the token does not verify: {err}") from None
        return claims
