"""From a call's credentials to a principal, and whether it may make the call in a namespace.

The credentials are a bearer token in the call's metadata (CMO_AUTH=jwt), or the client
certificate its TLS handshake verified (CMO_AUTH=mtls): one or the other, never both, so that a
caller is always named by one thing. Refusals say as little as they can: every credential problem
is the same UNAUTHENTICATED message (the reason goes to the server's log), a certificate whose
subject is not known is PERMISSION_DENIED, and a namespace outside the caller's is NOT_FOUND,
exactly as a resource that does not exist.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from cmo.a2a.errors import RejectedEnvelope
from cmo.a2a.tokens import JwtKey, TokenVerifier
from cmo_server.auth._certificates import CertificateSubjects, subject_of
from cmo_server.auth._principal import Principal
from cmo_server.auth._scopes import scope_of
from cmo_server.domain import Namespace
from cmo_server.errors import NotFound, PermissionDenied, Unauthenticated

__all__ = ["INVALID_CREDENTIALS", "Authenticator", "CallCredentials"]

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "missing or invalid credentials"
MAX_TOKEN = 8192
REMEMBERED = 4096
"""Tokens that verified, kept so that a client's next calls with the same token skip the check."""
REMEMBER_FOR = 60.0
"""Seconds at most a verified token is taken on trust (and never past its `exp`): a key removed
from the key file stops working within that time."""


class CallCredentials(Protocol):
    """What a call carries that may name its caller (a `grpc.aio.ServicerContext` is one)."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]] | None: ...

    def auth_context(self) -> Mapping[str, Iterable[bytes]]: ...


class Authenticator:
    """Checks bearer tokens (JWT, keys by id) for an issuer and an audience, or client certificates.

    Built with `subjects`, it names callers by their verified client certificates instead of tokens.
    """

    def __init__(
        self,
        keys: Iterable[JwtKey] = (),
        *,
        issuer: str = "",
        audience: str = "cmo",
        leeway: float = 30.0,
        subjects: CertificateSubjects | None = None,
    ) -> None:
        self._subjects = subjects
        self._verifier = (
            None
            if subjects is not None
            else TokenVerifier.of(
                keys, issuer=issuer, audience=audience, leeway=leeway, required_claims=("exp", "sub", "iss", "aud")
            )
        )
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def caller(self, call: CallCredentials) -> Principal:
        """The caller of a gRPC call: its certificate's subject (mTLS), else its bearer token.

        Raises:
            Unauthenticated: no credentials, or ones that do not verify.
            PermissionDenied: a verified certificate whose subject is not a known one.
        """
        if self._subjects is None:
            return self.principal(call.invocation_metadata())
        subject = subject_of(call.auth_context())
        if subject is None:  # a port without client certificates: a configuration the server refuses
            raise Unauthenticated(INVALID_CREDENTIALS)
        return self._subjects.principal(subject)

    def principal(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The caller that `authorization: Bearer <token>` names; Unauthenticated otherwise.

        With certificates deciding, no token names anyone (a scrape of /metrics, which carries
        none, is refused).
        """
        token = _bearer(metadata or ())
        if token is None or self._verifier is None:
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
