"""Unknown `CMO_*` variables: most likely a typo, whose setting then silently keeps its default."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from cmo_server.config._server import ServerConfig

__all__ = ["OTHER_VARIABLES", "unknown_settings"]

OTHER_VARIABLES = frozenset(
    {
        "CMO_ADDRESS",
        "CMO_TENANT",
        "CMO_PROJECT",
        "CMO_TOKEN",
        "CMO_TLS_CA_FILE",
        "CMO_TLS_CLIENT_CERT_FILE",
        "CMO_TLS_CLIENT_KEY_FILE",
        "CMO_PROTO_DIR",
    }
)
"""`CMO_*` variables that other parts of CMO read, not the server: the SDK's and cmoctl's server
address, namespace, bearer token and TLS files (the CA to trust, the client certificate and its
key), and where the Node.js example finds the protos."""
OTHER_PREFIXES = ("CMO_TEST_", "CMO_BENCH_")
"""Prefixes of the variables the test suite and the benchmarks read (their backends)."""


def unknown_settings(names: Iterable[str]) -> list[str]:
    """A warning for each `CMO_*` name among `names` that no part of CMO reads, with the closest known one.

    Only the `CMO_` prefix is CMO's own: the standard names it also reads (`POSTGRES_*`, `S3_*` ...)
    are shared with other programs, so the others found beside them are not reported.
    """
    known = ServerConfig.variables() | OTHER_VARIABLES
    warnings = []
    for name in sorted(names):
        if not name.startswith("CMO_") or name in known or name.startswith(OTHER_PREFIXES):
            continue
        closest = difflib.get_close_matches(name, known, n=1)
        warnings.append(f"unknown setting {name}" + (f" (did you mean {closest[0]}?)" if closest else ""))
    return warnings
