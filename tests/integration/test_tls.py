"""TLS and mutual TLS on a real server, with real certificates made here: a client certificate of
the server's client CA names its caller (its subject's namespaces enforced), and no certificate,
one of another CA, plaintext or an unknown subject get nothing; TLS alone carries bearer tokens."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

import cmo
from cmo.api.v1 import common_pb2
from cmo.api.v1 import run_service_pb2 as run_pb
from cmo.api.v1 import run_service_pb2_grpc as run_grpc
from cmo.cli import main as cmoctl
from cmo_server.app import CmoServer
from cmo_server.auth import UNKNOWN_SUBJECT
from cmo_server.config import AuthConfig, ConfigError, ServerConfig, StoreConfig, TLSConfig, UIConfig
from tests.integration.conftest import FAST_LIMITS
from tests.support.certificates import Issued, TestCA

ALL = ["runs:read", "runs:write", "runs:admin", "workers", "registry:read", "registry:write"]
SUBJECTS = {
    "acme-app": {"scopes": ALL, "namespaces": ["acme/*"]},
    "beta-app": {"scopes": ALL, "namespaces": ["beta/web"]},
    "ops": {"scopes": ["runs:read"], "namespaces": ["*"]},
}
SECRET = b"a-tls-integration-test-secret-of-32-bytes"
ISSUER = "https://auth.test"
HANDSHAKE = 5.0
"""Deadline of a call: a handshake on this machine takes milliseconds."""
REFUSED_WAIT = 1.0
"""Seconds `Client.connect` waits for a connection that is refused (it retries until then)."""


@dataclass(frozen=True)
class Pki:
    """The server's CA and certificate, clients' certificates by subject, and a rogue CA's."""

    ca: TestCA
    server: Issued
    clients: dict[str, Issued]
    rogue: Issued
    """A certificate for `acme-app`, a known subject, signed by a CA the server does not trust."""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = TestCA("trusted", tmp_path / "pki")
    clients = {name: ca.issue(name) for name in (*SUBJECTS, "stranger")}
    rogue = TestCA("rogue", tmp_path / "rogue").issue("acme-app")
    return Pki(ca, ca.issue("localhost", server=True), clients, rogue)


def _config(tmp_path: Path, *, auth: AuthConfig, tls: TLSConfig) -> ServerConfig:
    store = StoreConfig(sqlite_path=str(tmp_path / "cmo.db"))
    return ServerConfig(listen="127.0.0.1:0", store=store, limits=FAST_LIMITS, auth=auth, tls=tls)


@pytest.fixture
async def mtls_server(pki: Pki, tmp_path: Path) -> AsyncIterator[CmoServer]:
    subjects = tmp_path / "subjects.json"
    subjects.write_text(json.dumps(SUBJECTS))
    auth = AuthConfig(mode="mtls", mtls_subjects_file=str(subjects))
    tls = TLSConfig(str(pki.server.cert_file), str(pki.server.key_file), client_ca_file=str(pki.ca.ca_file))
    async with CmoServer.running(_config(tmp_path, auth=auth, tls=tls)) as server:
        yield server


def _tls(pki: Pki, client: Issued | None = None) -> cmo.TLSConfig:
    if client is None:
        return cmo.TLSConfig(ca_file=str(pki.ca.ca_file))
    return cmo.TLSConfig(str(pki.ca.ca_file), str(client.cert_file), str(client.key_file))


def _credentials(pki: Pki, client: Issued | None = None) -> grpc.ChannelCredentials:
    return _tls(pki, client).channel_credentials()


def _token(*, tenant: str = "acme") -> str:
    claims = {"sub": "tester", "iss": ISSUER, "aud": "cmo", "exp": int(time.time()) + 300, "tenant": tenant,
              "scope": " ".join(ALL)}  # fmt: skip
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})


async def _health(channel: grpc.aio.Channel) -> int:
    """The health status over `channel`: a public call, so only the connection can refuse it."""
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=HANDSHAKE)
    return int(reply.status)


async def _refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _health(channel)
    return refused.value.code()


async def test_a_good_client_certificate_runs_a_run_and_only_its_subjects_namespaces_exist(
    mtls_server: CmoServer, pki: Pki
) -> None:
    graph: cmo.Graph[dict[str, int]] = cmo.Graph("mtls-graph")

    @graph.node(entry=True)
    async def double(state: dict[str, int], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, int]]:
        return cmo.NodeResult({"n": state["n"] * 2}, next=cmo.END)

    address = f"127.0.0.1:{mtls_server.port}"
    async with await cmo.Client.connect(
        address, tenant="acme", project="web", tls=_tls(pki, pki.clients["acme-app"])
    ) as acme:
        worker = cmo.Worker(acme, [graph], concurrency=2)  # its session goes over the same TLS channel
        running = asyncio.create_task(worker.run())
        try:
            handle = await acme.start(graph, {"n": 21})
            assert await handle.result(timeout=20) == {"n": 42}
        finally:
            worker.shutdown()
            await asyncio.wait_for(running, 20)

    async with await cmo.Client.connect(
        address, tenant="beta", project="web", tls=_tls(pki, pki.clients["beta-app"])
    ) as beta:
        with pytest.raises(cmo.errors.RpcError) as refused:
            await beta.in_namespace("acme", "web").get_run(handle.run_id)
        assert refused.value.code == "NOT_FOUND"
        assert "namespace 'acme/web' not found" in str(refused.value)
        with pytest.raises(cmo.errors.RpcError) as refused:
            await beta.get_run(handle.run_id)  # nor is it in beta's own namespace
        assert refused.value.code == "NOT_FOUND"
        assert [r async for r in beta.list_runs()] == []

    # "*" is every namespace; its scopes still decide the calls.
    async with await cmo.Client.connect(
        address, tenant="acme", project="web", tls=_tls(pki, pki.clients["ops"])
    ) as ops:
        assert (await ops.get_run(handle.run_id)).status is cmo.RunStatus.COMPLETED
        with pytest.raises(cmo.errors.RpcError) as refused:
            await ops.start(graph, {"n": 1})
        assert refused.value.code == "PERMISSION_DENIED"


async def test_without_a_client_certificate_or_with_another_cas_the_handshake_fails(
    mtls_server: CmoServer, pki: Pki
) -> None:
    address = f"127.0.0.1:{mtls_server.port}"
    async with grpc.aio.secure_channel(address, _credentials(pki, pki.clients["acme-app"])) as good:
        assert await _health(good) == health_pb2.HealthCheckResponse.SERVING  # the same port answers this one
    async with grpc.aio.secure_channel(address, _credentials(pki)) as no_certificate:
        assert await _refused(no_certificate) is grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.secure_channel(address, _credentials(pki, pki.rogue)) as rogue:
        assert await _refused(rogue) is grpc.StatusCode.UNAVAILABLE  # a known subject, but not our CA's
    with pytest.raises(ConnectionError, match="over TLS"):
        await cmo.Client.connect(address, tls=_tls(pki), wait_ready=REFUSED_WAIT)


async def test_plaintext_to_the_tls_port_is_refused(mtls_server: CmoServer) -> None:
    address = f"127.0.0.1:{mtls_server.port}"
    async with grpc.aio.insecure_channel(address) as plaintext:
        assert await _refused(plaintext) is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ConnectionError):
        await cmo.Client.connect(address, tls=False, wait_ready=REFUSED_WAIT)


async def test_a_certificate_of_an_unknown_subject_is_permission_denied_and_a_token_does_not_help(
    mtls_server: CmoServer, pki: Pki
) -> None:
    address = f"127.0.0.1:{mtls_server.port}"
    async with grpc.aio.secure_channel(address, _credentials(pki, pki.clients["stranger"])) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING  # the handshake passed
        runs = run_grpc.RunServiceStub(channel)
        for metadata in ((), (("authorization", f"Bearer {_token()}"),)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await runs.ListRuns(run_pb.ListRunsRequest(namespace=common_pb2.Namespace(tenant="acme")),
                                    metadata=metadata, timeout=HANDSHAKE)  # fmt: skip
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert refused.value.details() == UNKNOWN_SUBJECT


async def test_cmoctl_carries_the_client_certificate(mtls_server: CmoServer, pki: Pki) -> None:
    acme = pki.clients["acme-app"]
    base = ["--address", f"127.0.0.1:{mtls_server.port}", "--tenant", "acme", "--tls-ca-file", str(pki.ca.ca_file)]
    runner = CliRunner()
    # cmoctl runs its own event loop: in a thread, beside the server's.
    listed = await asyncio.to_thread(
        runner.invoke,
        cmoctl,
        [*base, "--tls-cert-file", str(acme.cert_file), "--tls-key-file", str(acme.key_file), "runs", "list", "--json"],
    )
    assert listed.exit_code == 0, listed.output
    assert listed.output == ""  # no runs yet, and no error
    half = await asyncio.to_thread(
        runner.invoke, cmoctl, [*base, "--tls-cert-file", str(acme.cert_file), "runs", "list"]
    )
    assert half.exit_code == 2
    assert "--tls-cert-file and --tls-key-file go together" in half.output
    env = {"CMO_TLS_CA_FILE": str(pki.ca.ca_file), "CMO_TLS_CLIENT_CERT_FILE": str(acme.cert_file),
           "CMO_TLS_CLIENT_KEY_FILE": str(acme.key_file)}  # fmt: skip
    from_env = await asyncio.to_thread(
        runner.invoke, cmoctl, ["--address", f"127.0.0.1:{mtls_server.port}", "--tenant", "acme", "runs", "list"],
        env=env,
    )  # fmt: skip
    assert from_env.exit_code == 0, from_env.output


@pytest.fixture
async def jwt_over_tls(pki: Pki, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[CmoServer]:
    """CMO_AUTH=jwt on a TLS port; with the parameter "mtls", client certificates are required too."""
    (tmp_path / "auth.key").write_bytes(SECRET)
    auth = AuthConfig(mode="jwt", keys_file=str(tmp_path / "auth.key"), key_id="k1", algorithm="HS256", issuer=ISSUER)
    client_ca = str(pki.ca.ca_file) if getattr(request, "param", "") == "mtls" else ""
    tls = TLSConfig(str(pki.server.cert_file), str(pki.server.key_file), client_ca_file=client_ca)
    config = replace(_config(tmp_path, auth=auth, tls=tls), ui=UIConfig(listen="127.0.0.1:0"))
    async with CmoServer.running(config) as server:
        yield server


async def test_tls_without_client_certificates_carries_a_bearer_token_which_decides(
    jwt_over_tls: CmoServer, pki: Pki
) -> None:
    address = f"127.0.0.1:{jwt_over_tls.port}"
    async with await cmo.Client.connect(address, tenant="acme", project="web", tls=_tls(pki), token=_token()) as c:
        assert [r async for r in c.list_runs()] == []
        with pytest.raises(cmo.errors.RpcError) as refused:
            await c.in_namespace("beta", "web").get_run("r")
        assert refused.value.code == "NOT_FOUND"
    async with await cmo.Client.connect(address, tenant="acme", tls=_tls(pki), token="") as anonymous:
        with pytest.raises(cmo.errors.RpcError) as refused:
            await anonymous.get_run("r")
        assert refused.value.code == "UNAUTHENTICATED"
    async with grpc.aio.insecure_channel(address) as plaintext:
        assert await _refused(plaintext) is grpc.StatusCode.UNAVAILABLE


def _browser(pki: Pki, client: Issued | None = None) -> ssl.SSLContext:
    """What a browser that trusts the server's CA (and holds `client`'s certificate) connects with."""
    context = ssl.create_default_context(cafile=str(pki.ca.ca_file))
    if client is not None:
        context.load_cert_chain(str(client.cert_file), str(client.key_file))
    return context


async def test_the_web_ui_speaks_https_with_the_grpc_ports_certificate(jwt_over_tls: CmoServer, pki: Pki) -> None:
    url = f"https://127.0.0.1:{jwt_over_tls.ui_port}"
    async with httpx.AsyncClient(base_url=url, verify=_browser(pki), timeout=HANDSHAKE) as browser:
        assert (await browser.get("/api/v1/session")).json()["auth"] is True
        listed = await browser.get(
            "/api/v1/runs", params={"tenant": "acme", "project": "web"}, headers={"Authorization": f"Bearer {_token()}"}
        )
        assert (listed.status_code, listed.json()["runs"]) == (200, [])
        assert (await browser.get("/api/v1/runs")).status_code == 401
    async with httpx.AsyncClient(timeout=HANDSHAKE) as plaintext:
        with pytest.raises(httpx.HTTPError):
            await plaintext.get(f"http://127.0.0.1:{jwt_over_tls.ui_port}/api/v1/session")
    async with httpx.AsyncClient(verify=ssl.create_default_context(), timeout=HANDSHAKE) as untrusting:
        with pytest.raises(httpx.ConnectError):  # a certificate of a CA the system does not know
            await untrusting.get(f"{url}/api/v1/session")


@pytest.mark.parametrize("jwt_over_tls", ["mtls"], indirect=True)
async def test_with_client_certificates_required_the_web_ui_wants_one_of_the_ca_too(
    jwt_over_tls: CmoServer, pki: Pki
) -> None:
    url = f"https://127.0.0.1:{jwt_over_tls.ui_port}/api/v1/session"
    for refused in (_browser(pki), _browser(pki, pki.rogue)):
        async with httpx.AsyncClient(verify=refused, timeout=HANDSHAKE) as browser:
            with pytest.raises(httpx.HTTPError):
                await browser.get(url)
    async with httpx.AsyncClient(verify=_browser(pki, pki.clients["stranger"]), timeout=HANDSHAKE) as browser:
        assert (await browser.get(url)).json()["auth"] is True


@pytest.mark.parametrize("jwt_over_tls", ["mtls"], indirect=True)
async def test_jwt_with_mtls_needs_both_the_certificate_and_the_token(jwt_over_tls: CmoServer, pki: Pki) -> None:
    address = f"127.0.0.1:{jwt_over_tls.port}"
    unmapped = pki.clients["stranger"]  # any certificate of the CA will do: the token names the caller
    async with await cmo.Client.connect(address, tenant="acme", tls=_tls(pki, unmapped), token=_token()) as c:
        assert [r async for r in c.list_runs()] == []
    async with await cmo.Client.connect(address, tenant="acme", tls=_tls(pki, unmapped), token="") as anonymous:
        with pytest.raises(cmo.errors.RpcError) as refused:
            await anonymous.get_run("r")
        assert refused.value.code == "UNAUTHENTICATED"
    with pytest.raises(ConnectionError):
        await cmo.Client.connect(address, tls=_tls(pki), token=_token(), wait_ready=REFUSED_WAIT)


async def test_a_server_whose_tls_or_subjects_file_is_bad_does_not_start(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM")
    server, other = pki.server, pki.clients["acme-app"]
    subjects = tmp_path / "subjects.json"
    subjects.write_text(json.dumps(SUBJECTS))
    mtls = AuthConfig(mode="mtls", mtls_subjects_file=str(subjects))
    cases = [
        (TLSConfig(str(garbage), str(server.key_file)), AuthConfig(), "CMO_TLS_CERT_FILE"),
        (TLSConfig(str(server.cert_file), str(other.key_file)), AuthConfig(), "CMO_TLS_KEY_FILE"),
        (TLSConfig(str(server.cert_file), str(server.key_file), str(garbage)), mtls, "CMO_TLS_CLIENT_CA_FILE"),
        (
            TLSConfig(str(server.cert_file), str(server.key_file), str(pki.ca.ca_file)),
            AuthConfig(mode="mtls", mtls_subjects_file=str(garbage)),
            "CMO_AUTH_MTLS_SUBJECTS_FILE",
        ),
    ]
    for tls, auth, variable in cases:
        with pytest.raises(ConfigError) as refused:
            async with CmoServer.running(_config(tmp_path, auth=auth, tls=tls)):
                pass
        assert refused.value.variable == variable
