"""Callers by client certificate (CMO_AUTH=mtls): the verified subject's scopes and namespaces, from a file.

The TLS handshake has already verified the certificate against the clients' CA (a client
without one never gets a call through); what is left is who its subject is and what that subject
may do. The subjects file is a JSON object from each subject's common name to what a token's
claims would say:

    {"billing-worker": {"scopes": ["workers"], "namespaces": ["acme/billing"]},
     "ops": {"scopes": ["*"], "namespaces": ["*"]}}

`namespaces` are the patterns of `Principal` (`tenant/project`, `tenant/*`, `*/*`; `*` alone is
every namespace too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from cmo_server.auth._principal import Principal
from cmo_server.errors import PermissionDenied

__all__ = ["UNKNOWN_SUBJECT", "CertificateSubjects", "load_subjects", "subject_of"]

logger = logging.getLogger(__name__)

UNKNOWN_SUBJECT = "this client certificate's subject may make no call"
COMMON_NAME = "x509_common_name"
"""The key of grpc's auth context that holds the verified peer certificate's subject common name."""


class CertificateSubjects:
    """The principal of each known certificate subject (common name)."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._principals = dict(principals)

    def __len__(self) -> int:
        return len(self._principals)

    def principal(self, subject: str) -> Principal:
        """The caller a verified certificate of `subject` names; PermissionDenied if it is not in the file."""
        principal = self._principals.get(subject)
        if principal is None:
            logger.info("refused a client certificate: subject %r is not in the subjects file", subject[:256])
            raise PermissionDenied(UNKNOWN_SUBJECT)
        return principal


def subject_of(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The common name of the call's verified client certificate; None without one (or with several)."""
    names = list(auth_context.get(COMMON_NAME, ()))
    return names[0].decode(errors="replace") if len(names) == 1 else None


def load_subjects(path: str | Path) -> CertificateSubjects:
    """The subjects in `path` (see the module's docstring).

    Raises:
        ValueError: the file is not such a JSON object; the message says where.
    """
    try:
        document = json.loads(Path(path).read_bytes())
    except ValueError:
        raise ValueError("is not JSON") from None
    if not isinstance(document, dict) or not document:
        raise ValueError("must be a JSON object from subject common names to their scopes and namespaces")
    return CertificateSubjects({subject: _principal(subject, grant) for subject, grant in document.items()})


def _principal(subject: str, grant: object) -> Principal:
    if not subject or not isinstance(grant, dict):
        raise ValueError(f"subject {subject[:64]!r}: must map to an object with scopes and namespaces")
    scopes, namespaces = grant.get("scopes"), grant.get("namespaces")
    for field, listed in (("scopes", scopes), ("namespaces", namespaces)):
        if not isinstance(listed, list) or not all(isinstance(item, str) and item for item in listed):
            raise ValueError(f"subject {subject[:64]!r}: {field} must be a list of strings")
    roles = grant.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(item, str) and item for item in roles):
        raise ValueError(f"subject {subject[:64]!r}: roles, if given, must be a list of strings")
    assert isinstance(scopes, list)
    assert isinstance(namespaces, list)
    patterns = ["*/*" if pattern == "*" else pattern for pattern in namespaces]
    # The same rules as a token's claims; a pattern they would drop is an error in a file.
    claims = {"sub": subject, "scopes": scopes, "namespaces": patterns, "roles": roles}
    principal = Principal.from_claims(claims)
    if len(principal.namespaces) != len(patterns):
        bad = next(p for p in patterns if p not in principal.namespaces)
        raise ValueError(f"subject {subject[:64]!r}: {bad[:64]!r} is not a tenant/project pattern")
    return principal
