"""The blob store's settings: where large payloads and artifacts go, a directory or an S3 bucket."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cmo_server.config._readers import ConfigError, _bool, _int

__all__ = ["BLOB_BACKENDS", "BlobConfig", "S3Settings"]


BLOB_BACKENDS = ("filesystem", "s3")
"""Values of `CMO_BLOB_BACKEND`."""

# S3 bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens, alphanumeric at both ends.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the S3 blob store (`CMO_BLOB_BACKEND=s3`) keeps its objects, and how it signs in."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        "S3_ENDPOINT",
        "S3_BUCKET",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "S3_REGION",
        "S3_SECURE",
        "S3_PREFIX",
        "CMO_S3_CA_FILE",
        "CMO_S3_CREATE_BUCKET",
    )
    """Every variable these settings are read from."""

    endpoint: str = ""
    """`host:port`, or a URL `http://host:port` / `https://host[:port]` whose scheme sets TLS (S3_ENDPOINT)."""
    bucket: str = ""
    """Bucket holding the blobs (S3_BUCKET)."""
    access_key: str = ""
    """Access key id (S3_ACCESS_KEY)."""
    secret_key: str = field(default="", repr=False)
    """Secret key (S3_SECRET_KEY); never logged nor shown by `redacted`."""
    region: str = ""
    """Region to sign for (S3_REGION); empty: the client asks the server for the bucket's region."""
    secure: bool | None = None
    """Whether to use TLS (S3_SECURE); None: from the endpoint's scheme, and TLS when it has none."""
    prefix: str = ""
    """Prepended verbatim to every object key, e.g. `cmo/` (S3_PREFIX)."""
    ca_file: str = ""
    """PEM file of the CA certificates to trust for TLS (CMO_S3_CA_FILE); empty: the public CAs."""
    create_bucket: bool = True
    """Create the bucket at start when it is missing (CMO_S3_CREATE_BUCKET)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Settings:
        """Read the S3_* variables (and CMO_S3_*); checked by `validate` only when S3 is the backend."""
        return cls(
            endpoint=env.get("S3_ENDPOINT", ""),
            bucket=env.get("S3_BUCKET", ""),
            access_key=env.get("S3_ACCESS_KEY", ""),
            secret_key=env.get("S3_SECRET_KEY", ""),
            region=env.get("S3_REGION", ""),
            secure=_bool(env, "S3_SECURE", None),
            prefix=env.get("S3_PREFIX", ""),
            ca_file=env.get("CMO_S3_CA_FILE", ""),
            create_bucket=_bool(env, "CMO_S3_CREATE_BUCKET", True) is not False,
        )

    @property
    def host(self) -> str:
        """The endpoint without its scheme: `host:port` (or `host`) as the client wants it."""
        return self.endpoint.partition("://")[2] if "://" in self.endpoint else self.endpoint

    @property
    def tls(self) -> bool:
        """Whether connections use TLS: `secure` if set, else the endpoint's scheme, else True."""
        if self.secure is not None:
            return self.secure
        return not self.endpoint.startswith("http://")

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad S3 setting."""
        for name, value in (
            ("S3_ENDPOINT", self.endpoint),
            ("S3_BUCKET", self.bucket),
            ("S3_ACCESS_KEY", self.access_key),
            ("S3_SECRET_KEY", self.secret_key),
        ):
            if not value:
                raise ConfigError(name, "is required when CMO_BLOB_BACKEND=s3")
        scheme = self.endpoint.partition("://")[0] if "://" in self.endpoint else ""
        if scheme not in ("", "http", "https"):
            raise ConfigError("S3_ENDPOINT", f"must be host:port or an http(s):// URL, got {self.endpoint!r}")
        host, _, port = self.host.partition(":")
        if not host or "/" in self.host.rstrip("/") or (port and not port.rstrip("/").isdigit()):
            raise ConfigError(
                "S3_ENDPOINT", f"must be host:port or an http(s):// URL without a path, got {self.endpoint!r}"
            )
        if scheme and self.secure is not None and self.secure != (scheme == "https"):
            raise ConfigError(
                "S3_SECURE",
                f"is {str(self.secure).lower()}, which contradicts the scheme of S3_ENDPOINT {self.endpoint!r}",
            )
        if not _BUCKET_NAME.fullmatch(self.bucket) or ".." in self.bucket:
            raise ConfigError(
                "S3_BUCKET",
                "must be 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a"
                f" letter or digit, got {self.bucket!r}",
            )
        if self.prefix.startswith("/"):
            raise ConfigError("S3_PREFIX", f"must not start with '/', got {self.prefix!r}")
        if self.ca_file and not os.path.isfile(self.ca_file):
            raise ConfigError("CMO_S3_CA_FILE", f"must name a readable PEM file, got {self.ca_file!r}")

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON, the secret key masked."""
        return {
            "endpoint": self.endpoint,
            "tls": self.tls,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "region": self.region,
            "access_key": self.access_key,
            "secret_key": "***" if self.secret_key else "",
            "ca_file": self.ca_file,
            "create_bucket": self.create_bucket,
        }


@dataclass(frozen=True, slots=True)
class BlobConfig:
    """Where payloads above the inline threshold and artifacts are kept, and how large they may be."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        "CMO_BLOB_BACKEND",
        "CMO_BLOB_DIR",
        *S3Settings.VARIABLES,
        "CMO_INLINE_THRESHOLD_BYTES",
        "CMO_MAX_ARTIFACT_BYTES",
    )
    """Every variable this group reads."""

    backend: str = "filesystem"
    """Where blobs go (CMO_BLOB_BACKEND): `filesystem` (see `ServerConfig.blob_root`) or `s3` (see `s3`)."""
    dir: str = ""
    """Directory of the filesystem blob store (CMO_BLOB_DIR); empty: see `ServerConfig.blob_root`."""
    s3: S3Settings = field(default_factory=S3Settings)
    """The S3 blob store's settings, used when `backend` is `s3`."""
    inline_threshold_bytes: int = 256 * 1024
    """Payloads larger than this go to the blob store; smaller ones stay inline."""
    max_artifact_bytes: int = 64 * 1024 * 1024
    """Largest artifact a worker may put (the server holds one in memory while it stores it)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BlobConfig:
        """Read and check CMO_BLOB_*, the S3 settings (when S3 is the backend) and the size limits.

        Raises:
            ConfigError: one of them is malformed; the message never shows the secret key.
        """
        base = cls()
        config = cls(
            backend=env.get("CMO_BLOB_BACKEND") or base.backend,
            dir=env.get("CMO_BLOB_DIR") or base.dir,
            s3=S3Settings.from_env(env),
            inline_threshold_bytes=_int(env, "CMO_INLINE_THRESHOLD_BYTES", base.inline_threshold_bytes),
            max_artifact_bytes=_int(env, "CMO_MAX_ARTIFACT_BYTES", base.max_artifact_bytes),
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.backend not in BLOB_BACKENDS:
            raise ConfigError("CMO_BLOB_BACKEND", f"must be one of {', '.join(BLOB_BACKENDS)}, got {self.backend!r}")
        if self.backend == "s3":
            self.s3.validate()
        if self.dir and not self.dir.strip():
            raise ConfigError("CMO_BLOB_DIR", f"must be a directory path, got {self.dir!r}")
        if self.inline_threshold_bytes < 0:
            raise ConfigError("CMO_INLINE_THRESHOLD_BYTES", f"must be 0 or more, got {self.inline_threshold_bytes}")
        if self.max_artifact_bytes < 1:
            raise ConfigError("CMO_MAX_ARTIFACT_BYTES", f"must be at least 1, got {self.max_artifact_bytes}")

    def redacted(self, root: str) -> dict[str, Any]:
        """The settings as JSON, the S3 secret key masked; `root` is the filesystem store's directory."""
        shown: dict[str, Any] = {"backend": self.backend}
        if self.backend == "s3":
            shown["s3"] = self.s3.redacted()
        else:
            shown["dir"] = root
        shown["inline_threshold_bytes"] = self.inline_threshold_bytes
        shown["max_artifact_bytes"] = self.max_artifact_bytes
        return shown
