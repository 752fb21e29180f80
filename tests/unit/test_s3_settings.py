"""The S3 blob store's settings: read from the environment, validated naming the variable, never leaking the secret."""

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from cmo_server.blob import BlobStoreUnavailable, FilesystemBlobStore
from cmo_server.blob._s3 import make_client
from cmo_server.config import ConfigError, S3Settings, ServerConfig

SECRET = "s3cr3t-Do-Not-Log"
S3_ENV = {
    "CMO_BLOB_BACKEND": "s3",
    "S3_ENDPOINT": "https://s3.example.com",
    "S3_BUCKET": "cmo-blobs",
    "S3_ACCESS_KEY": "AKIAEXAMPLE",
    "S3_SECRET_KEY": SECRET,
}


def s3_config(**changes: str) -> ServerConfig:
    return ServerConfig.from_env({**S3_ENV, **changes})


def test_the_s3_backend_is_read_from_the_environment():
    config = s3_config(S3_REGION="eu-west-1", S3_PREFIX="cmo/", CMO_S3_CREATE_BUCKET="false")
    assert config.blob.backend == "s3"
    assert config.blob.s3 == S3Settings(
        endpoint="https://s3.example.com",
        bucket="cmo-blobs",
        access_key="AKIAEXAMPLE",
        secret_key=SECRET,
        region="eu-west-1",
        prefix="cmo/",
        create_bucket=False,
    )
    assert (config.blob.s3.host, config.blob.s3.tls) == ("s3.example.com", True)
    assert ServerConfig.from_env({}).blob.backend == "filesystem"
    assert ServerConfig.from_env({"S3_BUCKET": ""}).blob.backend == "filesystem"  # S3_* unused, unchecked


@pytest.mark.parametrize(
    ("endpoint", "secure", "host", "tls"),
    [
        ("minio:9000", "", "minio:9000", True),  # no scheme: TLS unless told otherwise
        ("minio:9000", "false", "minio:9000", False),
        ("http://127.0.0.1:8333", "", "127.0.0.1:8333", False),
        ("https://s3.example.com:443/", "", "s3.example.com:443/", True),
        ("https://s3.example.com", "true", "s3.example.com", True),
    ],
)
def test_tls_follows_s3_secure_else_the_scheme_else_on(endpoint: str, secure: str, host: str, tls: bool):
    settings = s3_config(S3_ENDPOINT=endpoint, S3_SECURE=secure).blob.s3
    assert (settings.host, settings.tls) == (host, tls)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"CMO_BLOB_BACKEND": "gcs"}, "CMO_BLOB_BACKEND must be one of filesystem, s3, got 'gcs'"),
        ({"S3_ENDPOINT": ""}, "S3_ENDPOINT is required when CMO_BLOB_BACKEND=s3"),
        ({"S3_BUCKET": ""}, "S3_BUCKET is required when CMO_BLOB_BACKEND=s3"),
        ({"S3_ACCESS_KEY": ""}, "S3_ACCESS_KEY is required when CMO_BLOB_BACKEND=s3"),
        ({"S3_SECRET_KEY": ""}, "S3_SECRET_KEY is required when CMO_BLOB_BACKEND=s3"),
        (
            {"S3_ENDPOINT": "ftp://files:21"},
            r"S3_ENDPOINT must be host:port or an http\(s\):// URL, got 'ftp://files:21'",
        ),
        ({"S3_ENDPOINT": "https://s3.example.com/bucket"}, "S3_ENDPOINT must be .* without a path"),
        ({"S3_ENDPOINT": "minio:port"}, "S3_ENDPOINT must be"),
        ({"S3_SECURE": "maybe"}, "S3_SECURE must be true or false, got 'maybe'"),
        ({"S3_SECURE": "false"}, "S3_SECURE is false, which contradicts the scheme of S3_ENDPOINT"),
        ({"S3_BUCKET": "Blobs"}, "S3_BUCKET must be 3-63 lowercase letters"),
        ({"S3_BUCKET": "ab"}, "S3_BUCKET must be"),
        ({"S3_BUCKET": "my_blobs"}, "S3_BUCKET must be"),
        ({"S3_PREFIX": "/cmo/"}, "S3_PREFIX must not start with '/'"),
        ({"CMO_S3_CA_FILE": "/nonexistent/ca.pem"}, "CMO_S3_CA_FILE must name a readable PEM file"),
        ({"CMO_S3_CREATE_BUCKET": "sometimes"}, "CMO_S3_CREATE_BUCKET must be true or false"),
    ],
)
def test_a_bad_s3_setting_is_refused_naming_the_variable(changes: dict[str, str], message: str):
    with pytest.raises(ConfigError, match=message) as caught:
        s3_config(**changes)
    assert SECRET not in str(caught.value)


def test_the_secret_key_never_shows_in_redacted_settings_repr_or_logs(caplog: pytest.LogCaptureFixture):
    config = s3_config()
    shown = config.redacted()["blob"]
    assert shown["s3"]["secret_key"] == "***"
    assert shown["s3"]["access_key"] == "AKIAEXAMPLE"
    assert (shown["backend"], shown["s3"]["bucket"], shown["s3"]["tls"]) == ("s3", "cmo-blobs", True)
    assert "dir" not in shown  # not used by this backend
    assert SECRET not in str(shown)
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.blob.s3)
    with caplog.at_level(logging.INFO):
        logging.getLogger("cmo_server.test").info("config %s", config, extra={"config": config.redacted()})
    assert SECRET not in caplog.text
    assert "dir" in ServerConfig.from_env({}).redacted()["blob"]


def test_the_client_uses_tls_and_the_ca_file_as_configured(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")  # read only when a TLS connection is made
    settings = S3Settings(endpoint="https://s3.internal:9443", bucket="cmo", access_key="a", secret_key="b")
    client, http = make_client(replace(settings, ca_file=str(ca)))
    try:
        assert client._base_url.is_https
        assert client._base_url.host == "s3.internal:9443"
        assert http.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"  # never unverified
        assert http.connection_pool_kw["ca_certs"] == str(ca)
    finally:
        http.clear()

    client, http = make_client(replace(settings, endpoint="s3.internal:9000"))
    try:
        assert client._base_url.is_https  # no scheme, no S3_SECURE: TLS
        assert http.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
        assert http.connection_pool_kw["ca_certs"]  # the public CAs
    finally:
        http.clear()

    client, http = make_client(replace(settings, endpoint="s3.internal:9000", secure=False))
    try:
        assert not client._base_url.is_https
    finally:
        http.clear()


async def test_the_filesystem_store_pings_a_writable_place_and_names_a_bad_one(tmp_path: Path):
    async with FilesystemBlobStore(tmp_path / "not" / "yet" / "made") as store:
        await store.ping()  # the first put will create it
    assert not (tmp_path / "not").exists()  # a ping makes nothing
    (tmp_path / "file").write_text("x")
    async with FilesystemBlobStore(tmp_path / "file" / "blobs") as store:
        with pytest.raises(BlobStoreUnavailable, match=r"CMO_BLOB_DIR.*is not a directory"):
            await store.ping()
