"""Authentication and authorisation: bearer tokens, the scope of each RPC, the caller's namespaces.

Not yet in the serving path: the server's interceptor and settings come next (issue 12).
"""

from cmo_server.auth._authenticator import INVALID_CREDENTIALS, Authenticator
from cmo_server.auth._keys import load_keys
from cmo_server.auth._principal import Principal
from cmo_server.auth._scopes import PUBLIC_SERVICES, SCOPES, scope_of

__all__ = ["INVALID_CREDENTIALS", "PUBLIC_SERVICES", "SCOPES", "Authenticator", "Principal", "load_keys", "scope_of"]
