"""From a call's metadata to a principal, and whether it may make the call in a namespace.

Refusals say as little as they can: every credential problem is the same UNAUTHENTICATED
message (the reason goes to the server's log), and a namespace outside the caller's is
NOT_FOUND, exactly as a resource that does not exist.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from cmo.a2a.errors import RejectedEnvelope
from cmo.a2a.tokens import JwtKey, TokenVerifier
from cmo_server.auth._principal import Principal
from cmo_server.auth._scopes import scope_of
from cmo_server.domain import Namespace
from cmo_server.errors import NotFound, PermissionDenied, Unauthenticated

__all__ = ["INVALID_CREDENTIALS", "Authenticator"]

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "missing or invalid credentials"
MAX_TOKEN = 8192
REMEMBERED = 4096
"""Tokens that verified, kept so that a client's next calls with the same token skip the check."""
REMEMBER_FOR = 60.0
"""Seconds at most a verified token is taken on trust (and never past its `exp`): a key removed
from the key file stops working within that time."""


class Authenticator:
    """Checks bearer tokens (JWT, keys by id) for an issuer and an audience."""

    def __init__(self, keys: Iterable[JwtKey], *, issuer: str, audience: str, leeway: float = 30.0) -> None:
        self._verifier = TokenVerifier.of(
            keys, issuer=issuer, audience=audience, leeway=leeway, required_claims=("exp", "sub", "iss", "aud")
        )
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def principal(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The caller that `authorization: Bearer <token>` names; Unauthenticated otherwise."""
        token = _bearer(metadata or ())
        if token is None:
            raise Unauthenticated(INVALID_CREDENTIALS)
        now = time.time()
        known = self._verified.get(token)
        if known is not None and known[1] > now:
            return known[0]
        try:
            claims = self._verifier.verify(token)
        except RejectedEnvelope as rejection:
            logger.info("refused a token: %s", rejection.detail)
            raise Unauthenticated(INVALID_CREDENTIALS) from None
        principal = Principal.from_claims(claims)
        self._verified[token] = (principal, min(float(claims["exp"]), now + REMEMBER_FOR))
        self._verified.move_to_end(token)
        if len(self._verified) > REMEMBERED:
            self._verified.popitem(last=False)
        return principal

    @staticmethod
    def authorize(principal: Principal, method: str, namespace: Namespace | None) -> None:
        """PermissionDenied without the method's scope; NotFound for a namespace not the caller's."""
        needed = scope_of(method)
        if needed is None or (needed and not principal.has_scope(needed)):
            raise PermissionDenied(f"this call needs the scope {needed or 'of a known method'}")
        if namespace is not None and not principal.may_use(namespace):
            raise NotFound("not found")


def _bearer(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    values = [v for k, v in metadata if k.lower() == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
        return None
    return token
