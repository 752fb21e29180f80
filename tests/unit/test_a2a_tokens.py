"""A2A tokens and replay protection: forged tokens refused with their reasons, scopes, capabilities."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cmo.a2a import AgentId, Envelope, Heartbeat, RejectedEnvelope
from cmo.a2a.replay import MemorySeenSet, ReplayGuard
from cmo.a2a.tokens import JwtKey, TokenVerifier, grants, has_capabilities, scopes_of

SECRET = b"h" * 32
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EC = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()

VERIFIER = TokenVerifier.of(
    [
        JwtKey("hs", "HS256", SECRET),
        JwtKey("rs", "RS256", RSA.public_key()),
        JwtKey("es", "ES256", EC.public_key()),
        JwtKey("ed", "EdDSA", ED.public_key()),
    ],
    issuer="https://auth.acme.example",
    audience="cmo",
)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": "https://auth.acme.example", "aud": "cmo", "sub": "triage", "iat": now, "exp": now + 300}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def token(key: Any, alg: str, kid: str, **changes: Any) -> str:
    return jwt.encode(claims(**changes), key, algorithm=alg, headers={"kid": kid})


def refused(raw: str) -> RejectedEnvelope:
    with pytest.raises(RejectedEnvelope) as raised:
        VERIFIER.verify(raw)
    return raised.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(SECRET, "HS256", "hs"), (RSA, "RS256", "rs"), (EC, "ES256", "es"), (ED, "EdDSA", "ed")]
)
def test_each_allowed_algorithm_verifies(key: Any, alg: str, kid: str):
    assert VERIFIER.verify(token(key, alg, kid))["sub"] == "triage"


def test_alg_none_is_refused():
    header = b64(json.dumps({"alg": "none", "kid": "hs", "typ": "JWT"}).encode())
    unsigned = f"{header}.{b64(json.dumps(claims()).encode())}."
    err = refused(unsigned)
    assert (err.reason, "'none' is not allowed" in err.detail) == ("bad_token", True)


def test_an_rs256_key_is_not_accepted_as_an_hmac_secret():
    # The classic confusion: sign HS256 with the RSA public key's PEM as the secret, name the RSA key.
    header = b64(json.dumps({"alg": "HS256", "kid": "rs", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    import hashlib
    import hmac

    mac = hmac.new(RSA_PUBLIC_PEM, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{b64(mac)}"
    err = refused(forged)
    assert err.reason == "bad_token"
    assert "is for RS256, the token says HS256" in err.detail


@pytest.mark.parametrize(
    ("changes", "reason", "detail"),
    [
        ({"exp": int(time.time()) - 3600}, "expired_token", "expired"),
        ({"nbf": int(time.time()) + 3600}, "bad_token", "not valid yet"),
        ({"aud": "someone-else"}, "bad_token", "another audience"),
        ({"iss": "https://evil.example"}, "bad_token", "another issuer"),
        ({"exp": None}, "bad_token", "exp"),
    ],
    ids=["expired", "nbf-in-the-future", "wrong-aud", "wrong-iss", "no-exp"],
)
def test_a_token_with_bad_claims_is_refused(changes: dict[str, Any], reason: str, detail: str):
    err = refused(token(SECRET, "HS256", "hs", **changes))
    assert err.reason == reason
    assert detail in err.detail


def test_a_bad_signature_an_unknown_key_and_garbage_are_refused():
    other = token(b"x" * 32, "HS256", "hs")
    assert refused(other).reason == "bad_token"
    assert "signature" in refused(other).detail
    assert refused(token(SECRET, "HS256", "nobody")).reason == "unknown_key"
    assert refused("not.a.jwt").reason == "bad_token"


def test_leeway_allows_a_little_clock_skew():
    assert VERIFIER.verify(token(SECRET, "HS256", "hs", exp=int(time.time()) - 10))["sub"] == "triage"


def test_a_key_cannot_be_for_none():
    with pytest.raises(ValueError, match="not allowed"):
        JwtKey("bad", "none", b"")


@pytest.mark.parametrize(
    ("granted", "required", "expected"),
    [
        ("repo.write:healing/selectors", "repo.write:healing/selectors", True),
        ("*", "repo.write:healing/selectors", True),
        ("repo.write:*", "repo.write:healing/selectors", True),
        ("repo.write:healing/*", "repo.write:healing/selectors", True),
        ("repo.write:healing/*", "repo.write:other/selectors", False),
        ("repo.write:healing/*", "repo.read:healing/selectors", False),
        ("repo.write", "repo.write:healing/selectors", False),
        ("repo.write:healing", "repo.write:healing/selectors", False),
    ],
)
def test_scopes_match_exactly_by_star_or_by_namespace(granted: str, required: str, expected: bool):
    assert grants(granted, required) is expected


def test_scopes_and_capabilities_are_read_from_their_claims():
    assert scopes_of({"scope": "a b:c"}) == ("a", "b:c")
    assert scopes_of({"scopes": ["a", 3, "b"]}) == ("a", "b")
    capability = {"capabilities": ["healing.selector", "repo.write:healing/*"]}
    assert has_capabilities(capability, ["healing.selector", "repo.write:healing/x"])
    assert not has_capabilities(capability, ["healing.selector", "repo.write:other/x"])
    assert not has_capabilities({}, ["healing.selector"])


def heartbeat(ts: datetime) -> Envelope:
    agent = AgentId("specialist", "healer", "1.0")
    return Envelope.build(Heartbeat("healthy"), sender=agent, to=agent, tenant="acme", project="web", ts=ts)


async def test_a_replayed_message_id_and_a_stale_or_future_timestamp_are_refused():
    guard = ReplayGuard(MemorySeenSet(), window=300, skew=30)
    now = datetime.now(UTC)
    fresh = heartbeat(now)
    await guard.check(fresh)
    with pytest.raises(RejectedEnvelope) as raised:
        await guard.check(fresh)
    assert raised.value.reason == "replayed_message"
    for moment in (now - timedelta(seconds=301), now + timedelta(seconds=31)):
        with pytest.raises(RejectedEnvelope) as raised:
            await guard.check(heartbeat(moment))
        assert raised.value.reason == "stale_message"
    await guard.check(heartbeat(now + timedelta(seconds=20)))  # within the skew
