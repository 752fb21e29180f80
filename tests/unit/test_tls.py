"""TLS settings and certificate subjects, with real certificates: every bad file is a ConfigError
naming its variable; a subjects file becomes principals by the token rules, or is refused; the
Authenticator names a caller by its certificate or its token, never both; the SDK's side of TLS."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import cmo
from cmo_server.auth import UNKNOWN_SUBJECT, Authenticator, Principal, load_subjects
from cmo_server.config import ConfigError, TLSConfig, unknown_settings
from cmo_server.domain import Namespace
from cmo_server.errors import PermissionDenied, Unauthenticated
from tests.support.certificates import Issued, TestCA


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA("unit", tmp_path / "pki")


@pytest.fixture
def server(ca: TestCA) -> Issued:
    return ca.issue("localhost", server=True)


def _read_error(tls: TLSConfig) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        tls.read()
    return refused.value


def test_good_files_are_read_and_the_key_never_shows(ca: TestCA, server: Issued) -> None:
    assert TLSConfig().read() is None  # TLS off
    material = TLSConfig(str(server.cert_file), str(server.key_file), str(ca.ca_file)).read()
    assert material is not None
    assert material.certificate_chain == server.cert_file.read_bytes()
    assert material.private_key == server.key_file.read_bytes()
    assert material.client_ca == ca.ca_file.read_bytes()
    assert b"PRIVATE KEY" not in repr(material).encode()
    assert TLSConfig(str(server.cert_file), str(server.key_file)).read().client_ca is None  # type: ignore[union-attr]


def test_each_bad_file_is_a_config_error_naming_its_variable(ca: TestCA, server: Issued, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cert, key = str(server.cert_file), str(server.key_file)
    another_key = str(ca.issue("someone").key_file)

    error = _read_error(TLSConfig(str(garbage), key))
    assert (error.variable, error.reason) == ("CMO_TLS_CERT_FILE", "holds no PEM certificate")
    error = _read_error(TLSConfig(key, key))  # a key where the certificate goes
    assert error.variable == "CMO_TLS_CERT_FILE"
    error = _read_error(TLSConfig(cert, str(garbage)))
    assert (error.variable, error.reason) == ("CMO_TLS_KEY_FILE", "holds no PEM private key")
    error = _read_error(TLSConfig(cert, another_key))
    assert error.variable == "CMO_TLS_KEY_FILE"
    assert "not the key of the first certificate" in error.reason
    error = _read_error(TLSConfig(cert, key, str(garbage)))
    assert (error.variable, error.reason) == ("CMO_TLS_CLIENT_CA_FILE", "holds no PEM certificate")

    encrypted = tmp_path / "encrypted.key"
    private = serialization.load_pem_private_key(server.key_file.read_bytes(), password=None)
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    error = _read_error(TLSConfig(cert, str(encrypted)))
    assert (error.variable, error.reason) == ("CMO_TLS_KEY_FILE", "holds an encrypted key: gRPC needs it unencrypted")

    server.key_file.unlink()  # gone between the check of the settings and the start
    error = _read_error(TLSConfig(cert, key))
    assert error.variable == "CMO_TLS_KEY_FILE"
    assert "cannot be read" in error.reason


def test_the_settings_name_what_is_missing(server: Issued) -> None:
    cert, key = str(server.cert_file), str(server.key_file)
    assert TLSConfig.from_env({}) == TLSConfig()
    assert not TLSConfig().enabled
    on = TLSConfig.from_env({"CMO_TLS_CERT_FILE": cert, "CMO_TLS_KEY_FILE": f" {key} "})
    assert (on.enabled, on.mutual, on.key_file) == (True, False, key)
    with pytest.raises(ConfigError, match=r"^CMO_TLS_KEY_FILE must name the private key"):
        TLSConfig.from_env({"CMO_TLS_CERT_FILE": cert})
    with pytest.raises(ConfigError, match=r"^CMO_TLS_CERT_FILE must name the certificate"):
        TLSConfig.from_env({"CMO_TLS_KEY_FILE": key})
    with pytest.raises(ConfigError, match=r"^CMO_TLS_CLIENT_CA_FILE needs CMO_TLS_CERT_FILE"):
        TLSConfig.from_env({"CMO_TLS_CLIENT_CA_FILE": cert})
    with pytest.raises(ConfigError, match=r"^CMO_TLS_CERT_FILE must name a readable PEM file"):
        TLSConfig.from_env({"CMO_TLS_CERT_FILE": cert + ".missing", "CMO_TLS_KEY_FILE": key})


# --- the subjects file -------------------------------------------------------------------------------


def _subjects_file(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "subjects.json"
    path.write_text(json.dumps(document))
    return path


def test_a_subjects_file_gives_each_subject_a_principal_by_the_token_rules(tmp_path: Path) -> None:
    path = _subjects_file(
        tmp_path,
        {
            "billing": {"scopes": ["workers", "runs:read"], "namespaces": ["acme/billing", "beta/*"]},
            "ops": {"scopes": ["*"], "namespaces": ["*"], "roles": ["admin"]},
            "nobody": {"scopes": [], "namespaces": []},
        },
    )
    subjects = load_subjects(path)
    assert len(subjects) == 3
    billing = subjects.principal("billing")
    assert billing == Principal("billing", ("workers", "runs:read"), ("acme/billing", "beta/*"))
    assert billing.may_use(Namespace("beta", "x"))
    assert not billing.may_use(Namespace("acme", "web"))
    ops = subjects.principal("ops")
    assert ops.namespaces == ("*/*",)  # "*" alone: every namespace
    assert ops.may_use(Namespace("any", "thing"))
    assert ops.has_scope("runs:admin")
    assert ops.roles == ("admin",)  # what the policies know it as
    assert not subjects.principal("nobody").may_use(Namespace("acme", "billing"))
    with pytest.raises(PermissionDenied, match=f"^{UNKNOWN_SUBJECT}$"):
        subjects.principal("Billing")  # names are exact


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ([], "must be a JSON object"),
        ({}, "must be a JSON object"),
        ({"a": ["workers"]}, "subject 'a': must map to an object"),
        ({"a": {"namespaces": ["acme/*"]}}, "subject 'a': scopes must be a list of strings"),
        ({"a": {"scopes": "workers", "namespaces": ["acme/*"]}}, "subject 'a': scopes must be a list"),
        ({"a": {"scopes": ["workers"], "namespaces": [3]}}, "subject 'a': namespaces must be a list of strings"),
        ({"a": {"scopes": ["workers"], "namespaces": ["acme"]}}, "subject 'a': 'acme' is not a tenant/project"),
        ({"a": {"scopes": ["workers"], "namespaces": ["ac*/x"]}}, "subject 'a': 'ac*/x' is not a tenant/project"),
        ({"a": {"scopes": [], "namespaces": [], "roles": "admin"}}, "subject 'a': roles, if given, must be a list"),
    ],
)
def test_a_bad_subjects_file_is_refused_saying_where(tmp_path: Path, document: object, said: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(said)):
        load_subjects(_subjects_file(tmp_path, document))


def test_a_subjects_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "subjects.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"^is not JSON$"):
        load_subjects(path)


# --- the Authenticator, by certificate ---------------------------------------------------------------


class Call:
    """What a gRPC call shows the Authenticator: its metadata and its TLS auth context."""

    def __init__(self, *, common_names: Sequence[bytes] = (), token: str = "") -> None:
        self.metadata = [("authorization", f"Bearer {token}")] if token else []
        self.context: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
        if common_names:
            self.context["x509_common_name"] = list(common_names)
        self.context_read = False

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return self.metadata

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        self.context_read = True
        return self.context


def test_with_certificates_the_subject_names_the_caller_and_tokens_name_nobody(tmp_path: Path) -> None:
    path = _subjects_file(tmp_path, {"billing": {"scopes": ["runs:read"], "namespaces": ["acme/*"]}})
    auth = Authenticator(subjects=load_subjects(path))
    caller = auth.caller(Call(common_names=[b"billing"]))
    assert (caller.subject, caller.scopes, caller.namespaces) == ("billing", ("runs:read",), ("acme/*",))
    auth.authorize(caller, "/cmo.api.v1.RunService/GetRun", Namespace("acme", "web"))
    with pytest.raises(PermissionDenied):
        auth.authorize(caller, "/cmo.api.v1.RunService/StartRun", Namespace("acme", "web"))
    with pytest.raises(PermissionDenied, match=UNKNOWN_SUBJECT):
        auth.caller(Call(common_names=[b"stranger"], token="a.b.c"))
    for no_certificate in (Call(), Call(token="a.b.c"), Call(common_names=[b"billing", b"other"])):
        with pytest.raises(Unauthenticated):
            auth.caller(no_certificate)
    with pytest.raises(Unauthenticated):  # /metrics: a token is all a scrape has
        auth.principal([("authorization", "Bearer a.b.c")])


def test_with_tokens_the_certificate_is_not_even_looked_at() -> None:
    from cmo.a2a.tokens import JwtKey

    auth = Authenticator([JwtKey("k", "HS256", b"a-unit-test-secret-of-32-bytes-or-more")], issuer="i", audience="cmo")
    call = Call(common_names=[b"billing"])
    with pytest.raises(Unauthenticated):
        auth.caller(call)
    assert not call.context_read


# --- the SDK's side ----------------------------------------------------------------------------------


def test_the_sdk_reads_its_tls_files_from_the_environment(ca: TestCA, tmp_path: Path) -> None:
    client = ca.issue("client")
    assert cmo.TLSConfig.from_env({}) is None
    assert cmo.TLSConfig.from_env({"CMO_TLS_CA_FILE": str(ca.ca_file)}) == cmo.TLSConfig(ca_file=str(ca.ca_file))
    mutual = cmo.TLSConfig.from_env(
        {
            "CMO_TLS_CA_FILE": str(ca.ca_file),
            "CMO_TLS_CLIENT_CERT_FILE": str(client.cert_file),
            "CMO_TLS_CLIENT_KEY_FILE": str(client.key_file),
        }
    )
    assert mutual == cmo.TLSConfig(str(ca.ca_file), str(client.cert_file), str(client.key_file))
    mutual.channel_credentials()  # reads the three files
    with pytest.raises(ValueError, match="CMO_TLS_CLIENT_CERT_FILE and CMO_TLS_CLIENT_KEY_FILE go together"):
        cmo.TLSConfig.from_env({"CMO_TLS_CLIENT_CERT_FILE": str(client.cert_file)})
    with pytest.raises(ValueError, match="go together"):
        cmo.TLSConfig(client_key_file=str(client.key_file))
    with pytest.raises(FileNotFoundError):
        cmo.TLSConfig(ca_file=str(tmp_path / "missing.pem")).channel_credentials()


def test_the_sdks_tls_variables_are_known_to_the_servers_check() -> None:
    assert unknown_settings(["CMO_TLS_CA_FILE", "CMO_TLS_CLIENT_CERT_FILE", "CMO_TLS_CLIENT_KEY_FILE"]) == []
