"""Authentication: who may call the server (bearer JWTs, keys by id from a file; or client certificates).

Opt-in for now: CMO_AUTH=jwt with a key file turns it on, or CMO_AUTH=mtls with a subjects file
(and TLS with a client CA, `TLSConfig`); unset (or `none`), every call is answered, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cmo.a2a.tokens import ALLOWED_ALGORITHMS
from cmo_server.config._readers import ConfigError, _masked_repr

__all__ = ["AuthConfig"]

MODES = ("none", "jwt", "mtls")


@dataclass(frozen=True, slots=True, repr=False)
class AuthConfig:
    """How callers prove who they are."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        "CMO_AUTH",
        "CMO_AUTH_KEYS_FILE",
        "CMO_AUTH_KEY_ID",
        "CMO_AUTH_ALGORITHM",
        "CMO_AUTH_ISSUER",
        "CMO_AUTH_AUDIENCE",
        "CMO_AUTH_MTLS_SUBJECTS_FILE",
    )
    """Every variable this group reads."""

    mode: str = "none"
    """CMO_AUTH: `jwt` (bearer tokens checked on every call), `mtls` (the verified client
    certificate's subject names the caller) or `none`."""
    keys_file: str = ""
    """CMO_AUTH_KEYS_FILE: a JWKS file (keys by `kid`, rotation by adding one), or one PEM public key
    or HMAC secret (then CMO_AUTH_KEY_ID and CMO_AUTH_ALGORITHM name it)."""
    key_id: str = ""
    """CMO_AUTH_KEY_ID: the `kid` of the one key of a file that is not a JWKS."""
    algorithm: str = ""
    """CMO_AUTH_ALGORITHM: what that key verifies (HS256, RS256, ES256, EdDSA, ...)."""
    issuer: str = ""
    """CMO_AUTH_ISSUER: the `iss` every token must carry."""
    audience: str = "cmo"
    """CMO_AUTH_AUDIENCE: the `aud` every token must carry."""
    mtls_subjects_file: str = ""
    """CMO_AUTH_MTLS_SUBJECTS_FILE: with `mtls`, a JSON object from each client certificate's
    subject common name to its `scopes` and `namespaces` (see `cmo_server.auth.load_subjects`)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthConfig:
        """Read and check the CMO_AUTH* variables.

        Raises:
            ConfigError: one of them is malformed, or `jwt` or `mtls` lacks what it needs.
        """
        config = cls(
            mode=env.get("CMO_AUTH", "").strip().lower() or "none",
            keys_file=env.get("CMO_AUTH_KEYS_FILE", "").strip(),
            key_id=env.get("CMO_AUTH_KEY_ID", "").strip(),
            algorithm=env.get("CMO_AUTH_ALGORITHM", "").strip(),
            issuer=env.get("CMO_AUTH_ISSUER", "").strip(),
            audience=env.get("CMO_AUTH_AUDIENCE", "").strip() or "cmo",
            mtls_subjects_file=env.get("CMO_AUTH_MTLS_SUBJECTS_FILE", "").strip(),
        )
        config.validate()
        return config

    @property
    def enabled(self) -> bool:
        """Whether every call but the public ones must name its caller."""
        return self.mode != "none"

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.mode not in MODES:
            raise ConfigError("CMO_AUTH", f"must be one of {', '.join(MODES)}, got {self.mode[:32]!r}")
        if self.algorithm and self.algorithm not in ALLOWED_ALGORITHMS:
            allowed = ", ".join(sorted(ALLOWED_ALGORITHMS))
            raise ConfigError("CMO_AUTH_ALGORITHM", f"must be one of {allowed}, got {self.algorithm[:32]!r}")
        # The files themselves are read when the server starts serving (`migrate` does not need them).
        if self.mode == "mtls" and not self.mtls_subjects_file:
            raise ConfigError(
                "CMO_AUTH_MTLS_SUBJECTS_FILE", "must name the file of the clients' subjects when CMO_AUTH=mtls"
            )
        if self.mode != "jwt":
            return
        if not self.keys_file:
            raise ConfigError("CMO_AUTH_KEYS_FILE", "must name the key file when CMO_AUTH=jwt")
        if not self.issuer:
            raise ConfigError("CMO_AUTH_ISSUER", "must be set when CMO_AUTH=jwt (every token's iss)")

    def __repr__(self) -> str:
        return _masked_repr(self)

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON (a key file's path is shown, never its contents)."""
        return {
            "mode": self.mode,
            "keys_file": self.keys_file,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "issuer": self.issuer,
            "audience": self.audience,
            "mtls_subjects_file": self.mtls_subjects_file,
        }
