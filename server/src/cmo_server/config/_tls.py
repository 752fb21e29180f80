"""TLS on the gRPC port: the server's certificate and key, and the CA of the clients' (mTLS).

Off unless CMO_TLS_CERT_FILE and CMO_TLS_KEY_FILE are set; then the port speaks only TLS (gRPC
refuses a plaintext client). With CMO_TLS_CLIENT_CA_FILE too, every client must present a
certificate that CA signed, or the handshake fails: the caller's identity with CMO_AUTH=mtls.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from cmo_server.config._readers import ConfigError

__all__ = ["TLSConfig", "TLSMaterial"]


@dataclass(frozen=True, slots=True)
class TLSMaterial:
    """The PEM files of a `TLSConfig`, read and checked: what the gRPC server is given."""

    certificate_chain: bytes
    """The server's certificate, then any intermediates (CMO_TLS_CERT_FILE)."""
    private_key: bytes = field(repr=False)
    """The server's private key (CMO_TLS_KEY_FILE); never shown."""
    client_ca: bytes | None = None
    """The CA certificates clients' certificates must chain to (CMO_TLS_CLIENT_CA_FILE); None: no mTLS."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Whether the gRPC port speaks TLS, and whether it requires client certificates."""

    VARIABLES: ClassVar[tuple[str, ...]] = ("CMO_TLS_CERT_FILE", "CMO_TLS_KEY_FILE", "CMO_TLS_CLIENT_CA_FILE")
    """Every variable this group reads."""

    cert_file: str = ""
    """CMO_TLS_CERT_FILE: the server's certificate chain (PEM), leaf first."""
    key_file: str = ""
    """CMO_TLS_KEY_FILE: the private key of that certificate (PEM, unencrypted)."""
    client_ca_file: str = ""
    """CMO_TLS_CLIENT_CA_FILE: the CA certificates (PEM) that sign the clients'; set, a client
    without such a certificate cannot connect."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TLSConfig:
        """Read and check the CMO_TLS_* variables (the files' contents are read at start, by `read`).

        Raises:
            ConfigError: a file is missing, or only one of the certificate and its key is set.
        """
        config = cls(
            cert_file=env.get("CMO_TLS_CERT_FILE", "").strip(),
            key_file=env.get("CMO_TLS_KEY_FILE", "").strip(),
            client_ca_file=env.get("CMO_TLS_CLIENT_CA_FILE", "").strip(),
        )
        config.validate()
        return config

    @property
    def enabled(self) -> bool:
        """Whether the gRPC port speaks TLS."""
        return bool(self.cert_file)

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate (mTLS)."""
        return bool(self.client_ca_file)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.cert_file and not self.key_file:
            raise ConfigError("CMO_TLS_KEY_FILE", "must name the private key of CMO_TLS_CERT_FILE's certificate")
        if self.key_file and not self.cert_file:
            raise ConfigError("CMO_TLS_CERT_FILE", "must name the certificate of CMO_TLS_KEY_FILE's key")
        if self.client_ca_file and not self.cert_file:
            raise ConfigError(
                "CMO_TLS_CLIENT_CA_FILE", "needs CMO_TLS_CERT_FILE and CMO_TLS_KEY_FILE (the server's own certificate)"
            )
        for name, path in self._files():
            if not os.path.isfile(path):
                raise ConfigError(name, f"must name a readable PEM file, got {path!r}")

    def read(self) -> TLSMaterial | None:
        """The files' contents, checked to be what they say; None when TLS is off.

        Raises:
            ConfigError: a file cannot be read, holds no PEM certificate (or key), or the key is not
                the certificate's; `variable` names the file's variable, the message never the key.
        """
        if not self.enabled:
            return None
        contents = {}
        for name, path in self._files():
            try:
                contents[name] = Path(path).read_bytes()
            except OSError:
                raise ConfigError(name, f"cannot be read: {path!r}") from None
        chain = _certificates("CMO_TLS_CERT_FILE", contents["CMO_TLS_CERT_FILE"])
        key = contents["CMO_TLS_KEY_FILE"]
        try:
            private = serialization.load_pem_private_key(key, password=None)
        except TypeError:
            raise ConfigError("CMO_TLS_KEY_FILE", "holds an encrypted key: gRPC needs it unencrypted") from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError("CMO_TLS_KEY_FILE", "holds no PEM private key") from None
        if _public(private.public_key()) != _public(chain[0].public_key()):
            raise ConfigError("CMO_TLS_KEY_FILE", "is not the key of the first certificate of CMO_TLS_CERT_FILE")
        client_ca = contents.get("CMO_TLS_CLIENT_CA_FILE")
        if client_ca is not None:
            _certificates("CMO_TLS_CLIENT_CA_FILE", client_ca)
        return TLSMaterial(contents["CMO_TLS_CERT_FILE"], key, client_ca)

    def _files(self) -> list[tuple[str, str]]:
        named = zip(self.VARIABLES, (self.cert_file, self.key_file, self.client_ca_file), strict=True)
        return [(name, path) for name, path in named if path]

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON (the files' paths; a key's contents are never read here)."""
        return {"cert_file": self.cert_file, "key_file": self.key_file, "client_ca_file": self.client_ca_file}


def _certificates(variable: str, pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(variable, "holds no PEM certificate") from None
    return certificates


def _public(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
