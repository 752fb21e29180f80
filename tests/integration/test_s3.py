"""The S3 blob store against a real S3 server: what the contract suite cannot say for every backend.

Credentials and connection problems, a missing bucket, an object replaced behind the store's
back, and a whole server with `CMO_BLOB_BACKEND=s3` running large states and artifacts.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

import cmo
from cmo.api.v1 import run_service_pb2 as run_pb
from cmo.api.v1 import run_service_pb2_grpc as run_grpc
from cmo_server.app import CmoServer
from cmo_server.blob import BlobCorrupted, BlobRef, BlobStoreUnavailable, S3BlobStore, open_blob_store
from cmo_server.config import BlobConfig, ServerConfig, StoreConfig
from tests.integration.conftest import FAST_LIMITS
from tests.integration.test_artifacts import CONTENT, DIGEST, report_graph
from tests.integration.test_large_payloads import STEPS, big_field, counting_graph
from tests.integration.test_runs import serving
from tests.support.postgres import free_port
from tests.support.s3 import S3Server, unique_bucket


def test_importing_the_server_does_not_import_minio():
    code = "import sys, cmo_server.app, cmo_server.blob; assert 'minio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def exists(path: str) -> bool:
    return Path(path).exists()


def objects(s3: S3Server, bucket: str) -> dict[str, int]:
    """Every object in `bucket`: key -> size."""
    with s3.client() as client:
        return {o.object_name or "": o.size or 0 for o in client.list_objects(bucket, recursive=True)}


@pytest.mark.s3
async def test_a_missing_bucket_is_created_when_the_store_opens(s3: S3Server):
    bucket = unique_bucket()
    async with S3BlobStore(s3.settings(bucket)) as store:
        with s3.client() as client:
            assert client.bucket_exists(bucket)  # before any put
        ref = await store.put(b"first")
        assert await store.get(ref) == b"first"
    assert objects(s3, bucket) == {f"sha256/{ref.sha256[:2]}/{ref.sha256[2:4]}/{ref.sha256}": 5}


@pytest.mark.s3
async def test_a_missing_bucket_is_an_error_naming_it_when_creation_is_off(s3: S3Server):
    bucket = unique_bucket()
    with pytest.raises(BlobStoreUnavailable, match=rf"bucket '{bucket}' \(S3_BUCKET\) does not exist") as caught:
        async with S3BlobStore(s3.settings(bucket, create_bucket=False)):
            pass
    assert "CMO_S3_CREATE_BUCKET" in str(caught.value)
    with s3.client() as client:
        assert not client.bucket_exists(bucket)


@pytest.mark.s3
async def test_wrong_credentials_are_a_clear_error_that_does_not_show_the_secret(s3: S3Server):
    wrong_secret = "not-the-secret-" + os.urandom(4).hex()
    for settings in (
        s3.settings(unique_bucket(), secret_key=wrong_secret),
        s3.settings(unique_bucket(), access_key="nobody", secret_key=wrong_secret),
    ):
        with pytest.raises(BlobStoreUnavailable) as caught:
            async with S3BlobStore(settings):
                pass
        message = str(caught.value)
        assert "refused access" in message
        assert "check S3_ACCESS_KEY, S3_SECRET_KEY" in message
        assert wrong_secret not in message
        assert s3.secret_key not in message

    # A store that was fine and then lost its key says so on use, and on ping.
    bucket = unique_bucket()
    async with S3BlobStore(s3.settings(bucket)):
        pass
    store = S3BlobStore(s3.settings(bucket, secret_key=wrong_secret))
    try:
        with pytest.raises(BlobStoreUnavailable, match=r"cannot put a blob: .* refused access"):
            await store.put(b"x")
        with pytest.raises(BlobStoreUnavailable, match=r"cannot check the bucket: .* refused access"):
            await store.ping()
    finally:
        await store.aclose()


@pytest.mark.s3
async def test_an_unreachable_endpoint_and_a_tls_mismatch_are_clear_errors(s3: S3Server):
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        BlobStoreUnavailable, match=r"S3 endpoint 127.0.0.1:\d+ \(S3_ENDPOINT, plain HTTP\) is unreachable"
    ):
        async with S3BlobStore(s3.settings("cmo-blobs", endpoint=nobody)):
            pass
    # TLS to a plain-HTTP server: the handshake fails, and the message points at the TLS settings.
    plain = s3.endpoint.removeprefix("http://").removeprefix("https://")
    with pytest.raises(BlobStoreUnavailable, match=r"\(S3_ENDPOINT, TLS\) is unreachable: .*check S3_SECURE"):
        async with S3BlobStore(s3.settings("cmo-blobs", endpoint=plain, secure=True)):
            pass


@pytest.mark.s3
async def test_an_object_replaced_behind_the_store_fails_verification_and_a_put_repairs_it(s3: S3Server):
    bucket = unique_bucket()
    data = os.urandom(100_000)
    async with S3BlobStore(s3.settings(bucket, prefix="cmo/")) as store:
        ref = await store.put(data)
        key = store.key(ref)
        assert key == f"cmo/sha256/{ref.sha256[:2]}/{ref.sha256[2:4]}/{ref.sha256}"
        with s3.client() as client:  # same size, no digest metadata: as a careless tool would write it
            client.put_object(bucket, key, io.BytesIO(os.urandom(len(data))), len(data))

        with pytest.raises(BlobCorrupted) as caught:
            await store.get(ref)
        assert caught.value.where == f"s3://{bucket}/{key}"
        assert caught.value.size == len(data)
        assert await store.put(data) == ref
        assert await store.get(ref) == data


@pytest.mark.s3
async def test_open_blob_store_follows_the_configured_backend(s3: S3Server, tmp_path: Path):
    bucket = unique_bucket()
    config = ServerConfig(blob=BlobConfig(backend="s3", s3=s3.settings(bucket, prefix="p/")))
    async with open_blob_store(config) as store:
        assert isinstance(store, S3BlobStore)
        await store.ping()
        ref = await store.put(b"via the config")
    assert list(objects(s3, bucket)) == [f"p/sha256/{ref.sha256[:2]}/{ref.sha256[2:4]}/{ref.sha256}"]

    async with open_blob_store(ServerConfig(blob=BlobConfig(dir=str(tmp_path / "blobs")))) as store:
        assert not isinstance(store, S3BlobStore)
        assert await store.put(b"on disk") == BlobRef.of(b"on disk")
    assert (tmp_path / "blobs").is_dir()


# -- a whole server on S3 -----------------------------------------------------------------------


@pytest.fixture
def s3_server_config(s3: S3Server, tmp_path: Path) -> tuple[ServerConfig, str]:
    bucket = unique_bucket()
    config = ServerConfig(
        listen="127.0.0.1:0",
        store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")),
        blob=BlobConfig(backend="s3", s3=s3.settings(bucket, prefix="blobs/"), dir=str(tmp_path / "unused-blobs")),
        limits=FAST_LIMITS,
    )
    return config, bucket


@pytest.fixture
async def s3_client(s3_server_config: tuple[ServerConfig, str]) -> AsyncIterator[cmo.Client]:
    config, _ = s3_server_config
    async with CmoServer.running(config) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as client:
        yield client


@pytest.mark.s3
async def test_a_server_on_s3_stores_an_unchanged_large_field_once_and_round_trips_artifacts(
    s3: S3Server, s3_server_config: tuple[ServerConfig, str], s3_client: cmo.Client
):
    config, bucket = s3_server_config
    big = big_field()
    graph = counting_graph()
    async with serving(s3_client, [graph]):
        handle = await s3_client.start(graph, {"big": big, "n": 0})
        assert await handle.result(timeout=60) == {"big": big, "n": STEPS}
    steps = await handle.history()
    assert [s.state for s in steps] == [{"big": big, "n": i + 1} for i in range(STEPS)]
    # The input, five states and the result all carry the field: one object in the bucket.
    assert list(objects(s3, bucket).values()) == [len(json.dumps(big))]

    artifacts = report_graph()
    async with serving(s3_client, [artifacts]):
        result = await (await s3_client.start(artifacts, {})).result(timeout=60)
    assert (result["same"], result["size"], result["ref"]["digest"]) == (True, len(CONTENT), DIGEST)
    digest = DIGEST.removeprefix("sha256:")
    assert objects(s3, bucket)[f"blobs/sha256/{digest[:2]}/{digest[2:4]}/{digest}"] == len(CONTENT)
    assert len(objects(s3, bucket)) == 2
    assert not exists(config.blob_root)  # nothing went to the filesystem store


@pytest.mark.s3
async def test_a_server_whose_s3_refuses_its_credentials_does_not_start(s3: S3Server, tmp_path: Path):
    config = ServerConfig(
        listen="127.0.0.1:0",
        store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")),
        blob=BlobConfig(
            backend="s3", s3=replace(s3.settings(unique_bucket()), secret_key="wrong-" + os.urandom(4).hex())
        ),
    )
    with pytest.raises(BlobStoreUnavailable, match="S3_SECRET_KEY"):
        async with CmoServer.running(config):
            pass


@pytest.mark.s3
def test_cmo_server_refused_by_s3_exits_with_one_line_naming_the_setting(s3: S3Server, tmp_path: Path):
    secret = "wrong-" + os.urandom(4).hex()
    env = {
        **os.environ,
        "CMO_BLOB_BACKEND": "s3",
        "S3_ENDPOINT": s3.endpoint,
        "S3_BUCKET": unique_bucket(),
        "S3_ACCESS_KEY": s3.access_key,
        "S3_SECRET_KEY": secret,
        "S3_REGION": s3.region,
    }
    command = [
        sys.executable,
        "-m",
        "cmo_server.cli",
        "start-dev",
        "--db",
        str(tmp_path / "cmo.db"),
        "--listen",
        "127.0.0.1:0",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "Error: blob store: cannot check the bucket" in result.stderr
    assert "check S3_ACCESS_KEY, S3_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr + result.stdout


@pytest.mark.s3
async def test_a_call_that_needs_s3_while_it_fails_is_unavailable_not_internal(
    s3: S3Server, s3_server_config: tuple[ServerConfig, str]
):
    config, bucket = s3_server_config
    async with (
        CmoServer.running(config) as server,
        await cmo.Client.connect(f"127.0.0.1:{server.port}") as cmo_client,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        graph = counting_graph()
        await cmo_client.register_graph(graph)
        with s3.client() as client:
            client.remove_bucket(bucket)  # empty yet; the test server does not create buckets on upload
        request = run_pb.StartRunRequest(
            run_id="r1",
            graph_id=graph.graph_id,
            graph_version=graph.version,
            input=json.dumps({"big": big_field()}).encode(),
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_grpc.RunServiceStub(channel).StartRun(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == "the blob store is unavailable; retry"
