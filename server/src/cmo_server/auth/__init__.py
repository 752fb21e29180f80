"""Authentication and authorisation: who calls (a token or a certificate), each RPC's scope, namespaces.

Opt-in (CMO_AUTH=jwt or mtls): `api/_handlers.py` puts every non-public method behind an Authenticator.
"""

from cmo_server.auth._audit import AUDITED, audit
from cmo_server.auth._authenticator import INVALID_CREDENTIALS, Authenticator, CallCredentials
from cmo_server.auth._certificates import UNKNOWN_SUBJECT, CertificateSubjects, load_subjects
from cmo_server.auth._keys import load_keys
from cmo_server.auth._principal import CALLER, Principal, lease_owner
from cmo_server.auth._scopes import METRICS_SCOPE, PUBLIC_SERVICES, SCOPES, scope_of

__all__ = [
    "AUDITED",
    "CALLER",
    "INVALID_CREDENTIALS",
    "METRICS_SCOPE",
    "PUBLIC_SERVICES",
    "SCOPES",
    "UNKNOWN_SUBJECT",
    "Authenticator",
    "CallCredentials",
    "CertificateSubjects",
    "Principal",
    "audit",
    "load_keys",
    "load_subjects",
    "lease_owner",
    "scope_of",
]
