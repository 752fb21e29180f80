"""TLS to the server: the CA to trust, and the client certificate a server with mTLS requires."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["TLSConfig"]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """How a client reaches a server over TLS, and the certificate it shows for mutual TLS.

    `TLSConfig()` trusts the system's CAs and shows no certificate. The files are read when a
    client connects. A bearer token, if any, goes over the TLS connection as it would over a
    plaintext one.
    """

    ca_file: str = ""
    """PEM file of the CA certificates that sign the server's; empty: the system's CAs."""
    client_cert_file: str = ""
    """PEM file of this client's certificate (and intermediates), for a server that requires one."""
    client_key_file: str = ""
    """PEM file of that certificate's private key (unencrypted)."""

    def __post_init__(self) -> None:
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ValueError("client_cert_file and client_key_file go together: give both or neither")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TLSConfig | None:
        """From $CMO_TLS_CA_FILE, $CMO_TLS_CLIENT_CERT_FILE and $CMO_TLS_CLIENT_KEY_FILE; None if none is set.

        Raises:
            ValueError: only one of the client certificate and its key is set.
        """
        env = os.environ if env is None else env
        ca_file = env.get("CMO_TLS_CA_FILE", "").strip()
        cert_file = env.get("CMO_TLS_CLIENT_CERT_FILE", "").strip()
        key_file = env.get("CMO_TLS_CLIENT_KEY_FILE", "").strip()
        if not (ca_file or cert_file or key_file):
            return None
        if bool(cert_file) != bool(key_file):
            raise ValueError("CMO_TLS_CLIENT_CERT_FILE and CMO_TLS_CLIENT_KEY_FILE go together: set both or neither")
        return cls(ca_file=ca_file, client_cert_file=cert_file, client_key_file=key_file)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """The files' contents as gRPC channel credentials.

        Raises:
            OSError: a file cannot be read.
        """
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.client_key_file),
            certificate_chain=_read(self.client_cert_file),
        )


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None
