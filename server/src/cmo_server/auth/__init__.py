"""Authentication and authorisation: bearer tokens, the scope of each RPC, the caller's namespaces.

Opt-in (CMO_AUTH=jwt): `api/_handlers.py` puts every non-public method behind an Authenticator.
"""

from cmo_server.auth._audit import AUDITED, audit
from cmo_server.auth._authenticator import INVALID_CREDENTIALS, Authenticator
from cmo_server.auth._keys import load_keys
from cmo_server.auth._principal import Principal
from cmo_server.auth._scopes import METRICS_SCOPE, PUBLIC_SERVICES, SCOPES, scope_of

__all__ = [
    "AUDITED",
    "INVALID_CREDENTIALS",
    "METRICS_SCOPE",
    "PUBLIC_SERVICES",
    "SCOPES",
    "Authenticator",
    "Principal",
    "audit",
    "load_keys",
    "scope_of",
]
