"""Authentication's rules, with real tokens (PyJWT, real RSA and EC keys): forged ones are refused
with one message that tells an attacker nothing; scopes and namespaces decide the rest."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cmo.a2a.tokens import JwtKey
from cmo.api.v1 import registry_service_pb2, run_service_pb2, worker_service_pb2
from cmo_server.auth import INVALID_CREDENTIALS, SCOPES, Authenticator, Principal, load_keys, scope_of
from cmo_server.domain import Namespace
from cmo_server.errors import NotFound, PermissionDenied, Unauthenticated

ISSUER, AUDIENCE = "https://auth.example", "cmo"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
SECRET = b"a-development-secret-of-32-bytes-at-least"


def authenticator() -> Authenticator:
    keys = [
        JwtKey("rsa-1", "RS256", RSA_KEY.public_key()),
        JwtKey("ec-1", "ES256", EC_KEY.public_key()),
        JwtKey("hs-1", "HS256", SECRET),
    ]
    return Authenticator(keys, issuer=ISSUER, audience=AUDIENCE)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "ci",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "scope": "runs:read runs:write",
        "tenant": "acme",
    }
    return {**base, **overrides}


def rs256(payload: dict[str, Any], kid: str = "rsa-1") -> str:
    return jwt.encode(payload, RSA_KEY, algorithm="RS256", headers={"kid": kid})


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_good_token_names_its_caller_scopes_and_namespaces() -> None:
    principal = authenticator().principal(bearer(rs256(claims())))
    assert principal == Principal("ci", ("runs:read", "runs:write"), ("acme/*",))
    es = jwt.encode(claims(namespaces=["acme/web", "beta/*"]), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
    assert authenticator().principal(bearer(es)).namespaces == ("acme/web", "beta/*")
    hs = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "hs-1"})
    assert authenticator().principal(bearer(hs)).subject == "ci"


def _none_token() -> str:
    header = _b64(json.dumps({"alg": "none", "kid": "rsa-1", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims()).encode())}."


def _rs256_resigned_hs256_with_the_public_key() -> str:
    # The classic key-confusion forgery: HMAC over the token with the RSA public key as the secret.
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims(scope="*")).encode())
    mac = hmac.new(RSA_PUBLIC_PEM, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(mac)}"


def _bad_signature() -> str:
    header, body, _ = rs256(claims()).split(".")
    other = rs256(claims(sub="someone-else")).split(".")[2]
    return f"{header}.{body}.{other}"


FORGED: dict[str, Callable[[], str]] = {
    "alg none": _none_token,
    "RS256 re-signed HS256 with the public key": _rs256_resigned_hs256_with_the_public_key,
    "expired": lambda: rs256(claims(exp=int(time.time()) - 3600)),
    "nbf in the future": lambda: rs256(claims(nbf=int(time.time()) + 3600)),
    "wrong audience": lambda: rs256(claims(aud="someone-else")),
    "wrong issuer": lambda: rs256(claims(iss="https://evil.example")),
    "no issuer": lambda: rs256({k: v for k, v in claims().items() if k != "iss"}),
    "bad signature": _bad_signature,
    "unknown key id": lambda: rs256(claims(), kid="rsa-2"),
    "no key id": lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
    "signed by another key": lambda: jwt.encode(
        claims(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "rsa-1"},
    ),
    "the right key id for the wrong algorithm": lambda: jwt.encode(
        claims(), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"}
    ),
    "not a JWT": lambda: "not-a-token",
}


@pytest.mark.parametrize("forgery", sorted(FORGED))
def test_a_forged_token_is_unauthenticated_and_the_message_says_nothing_more(forgery: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        authenticator().principal(bearer(FORGED[forgery]()))
    assert str(refused.value) == INVALID_CREDENTIALS


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("authorization", "")],
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer ")],
        [("authorization", "Bearer " + "x" * 9000)],
        [("authorization", "Bearer a"), ("authorization", "Bearer b")],
    ],
    ids=["none", "empty", "basic", "no token", "too long", "two"],
)
def test_no_usable_credentials_are_unauthenticated(metadata: list[tuple[str, str]]) -> None:
    with pytest.raises(Unauthenticated) as refused:
        authenticator().principal(metadata)
    assert str(refused.value) == INVALID_CREDENTIALS


def test_a_missing_scope_is_denied_and_a_namespace_not_the_callers_is_not_found() -> None:
    reader = Principal("r", ("runs:read",), ("acme/*",))
    Authenticator.authorize(reader, "/cmo.api.v1.RunService/GetRun", Namespace("acme", "web"))
    with pytest.raises(PermissionDenied):
        Authenticator.authorize(reader, "/cmo.api.v1.RunService/StartRun", Namespace("acme", "web"))
    with pytest.raises(PermissionDenied):
        Authenticator.authorize(reader, "/cmo.api.v1.RunService/TerminateRun", Namespace("acme", "web"))
    with pytest.raises(NotFound) as hidden:
        Authenticator.authorize(reader, "/cmo.api.v1.RunService/GetRun", Namespace("other", "web"))
    assert str(hidden.value) == "not found"
    with pytest.raises(PermissionDenied):
        Authenticator.authorize(reader, "/cmo.api.v1.RunService/NoSuchMethod", None)
    admin = Principal("a", ("*",), ("*/*",))
    Authenticator.authorize(admin, "/cmo.api.v1.RunService/PruneRuns", Namespace("any", "where"))
    Authenticator.authorize(reader, "/grpc.health.v1.Health/Check", None)  # public


def test_namespace_claims_and_their_wildcards() -> None:
    def of(**c: Any) -> Principal:
        return Principal.from_claims({"sub": "s", **c})

    assert of(tenant="acme", project="web").may_use(Namespace("acme", "web"))
    assert not of(tenant="acme", project="web").may_use(Namespace("acme", "api"))
    assert of(tenant="acme").may_use(Namespace("acme", "api"))  # no project: all of the tenant's
    assert of(namespaces=["*/*"]).may_use(Namespace("x", "y"))
    assert of(namespaces=["*/web"]).may_use(Namespace("x", "web"))
    assert not of(namespaces=["*/web"]).may_use(Namespace("x", "api"))
    assert not of(namespaces=["ac*/*", "acme", 7]).may_use(Namespace("acme", "web"))  # no partial wildcards
    assert not of().may_use(Namespace())  # a token naming no namespace may use none


def test_every_rpc_of_the_protos_has_a_scope() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (run_service_pb2, worker_service_pb2, registry_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods == set(SCOPES)
    assert all(scope_of(m) for m in methods)


def test_keys_load_from_a_jwks_file_or_one_pem_or_secret(tmp_path: Path) -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "rsa-1", "alg": "RS256"}]}))
    [key] = load_keys(tmp_path / "jwks.json")
    assert (key.kid, key.algorithm) == ("rsa-1", "RS256")
    assert Authenticator([key], issuer=ISSUER, audience=AUDIENCE).principal(bearer(rs256(claims()))).subject == "ci"

    (tmp_path / "public.pem").write_bytes(RSA_PUBLIC_PEM)
    [pem] = load_keys(tmp_path / "public.pem", kid="rsa-1", algorithm="RS256")
    assert Authenticator([pem], issuer=ISSUER, audience=AUDIENCE).principal(bearer(rs256(claims()))).subject == "ci"
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    [secret] = load_keys(tmp_path / "secret", kid="hs-1", algorithm="HS256")
    assert secret.key == SECRET

    bad = {
        "no alg": {"keys": [{**jwk, "kid": "k"}]},
        "alg none": {"keys": [{**jwk, "kid": "k", "alg": "none"}]},
        "a secret in a JWKS": {"keys": [{"kty": "oct", "k": _b64(SECRET), "kid": "k", "alg": "HS256"}]},
    }
    for document in bad.values():
        (tmp_path / "bad.json").write_text(json.dumps(document))
        with pytest.raises(ValueError, match="JWKS key"):
            load_keys(tmp_path / "bad.json")
    (tmp_path / "short").write_bytes(b"too short")
    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        load_keys(tmp_path / "short", kid="k", algorithm="HS256")
    with pytest.raises(ValueError, match="key id and an allowed algorithm"):
        load_keys(tmp_path / "public.pem", kid="k", algorithm="none")
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_keys(tmp_path / "short", kid="k", algorithm="RS256")
