"""A running orchestrator: a store, an engine and the gRPC server in front of them.

Its background loops (the health monitor, the retention schedule, the web UI's HTTP server, and
the engine's own) run in a
task group of the server's: one that crashes is logged, stops the others and the server, and
`CmoServer.running` raises it as an ExceptionGroup, so that a replica does not go on serving
with part of its work silently stopped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import cast

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2
from opentelemetry.sdk.trace import TracerProvider

from cmo.api.v1 import registry_service_pb2, run_service_pb2, worker_service_pb2
from cmo.policy import PolicyBundle, PolicyError
from cmo_server._background import log_crash
from cmo_server._health import HealthMonitor, HealthServicer
from cmo_server.a2a import ReplyConsumer, UnansweredRequests
from cmo_server.api import RegistryServicer, RunServicer, WorkerServicer, service_handler
from cmo_server.artifacts import Artifacts
from cmo_server.auth import METRICS_SCOPE, Authenticator, lease_owner, load_keys, load_subjects
from cmo_server.blob import open_blob_store
from cmo_server.config import ConfigError, ServerConfig, TelemetryConfig
from cmo_server.engine import Engine
from cmo_server.errors import CmoServerError
from cmo_server.http import UiServer, ui_app
from cmo_server.policy import DecisionLog, PolicyGates, PolicyReloader
from cmo_server.progress import Explainer, PollerBook, ProgressStore
from cmo_server.ratelimit import NamespaceRates
from cmo_server.registry import Agent, AgentStore, Registry
from cmo_server.retention import Retention
from cmo_server.store import OffloadingStore, Store
from cmo_server.telemetry import PrometheusMetrics, serve_metrics, server_interceptors, tracer_provider

__all__ = ["CmoServer", "open_store"]

logger = logging.getLogger(__name__)

SERVICES = (
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"],
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"],
    registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"],
)
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]


@asynccontextmanager
async def open_store(config: ServerConfig) -> AsyncIterator[Store]:
    """The configured backend, migrated: Postgres when a database URL is set, else SQLite."""
    if config.store.database_url:
        from cmo_server.store.postgres import PostgresStore

        async with PostgresStore.open(config.store.database_url, pool_size=config.store.pool_size) as pg:
            yield pg
    else:
        from pathlib import Path

        from cmo_server.store.sqlite import SqliteStore

        Path(config.store.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        async with SqliteStore.open(config.store.sqlite_path) as lite:
            yield lite


class CmoServer:
    """The gRPC server of one replica. Use `CmoServer.running(config)`."""

    def __init__(
        self,
        server: grpc.aio.Server,
        engine: Engine,
        health: health.aio.HealthServicer,
        port: int,
        *,
        metrics: PrometheusMetrics | None = None,
        metrics_port: int = 0,
    ) -> None:
        self._server = server
        self._engine = engine
        self._health = health
        self.port = port
        """The bound port (useful when the configured port was 0)."""
        self.metrics = metrics or PrometheusMetrics()
        """This server's Prometheus metrics (its own registry)."""
        self.metrics_port = metrics_port
        """The bound port of /metrics, /healthz and /readyz; 0 when there is no such endpoint."""
        self._loops: list[asyncio.Task[None]] = []
        self._stopped = False
        self.registry: Registry | None = None
        """The agent registry this server keeps."""
        self.policies: PolicyReloader | None = None
        """What keeps the policies in force current, when there are policies."""
        self.ui_port = 0
        """The bound port of the web UI (CMO_UI_LISTEN); 0 when it is off."""
        self._ui: UiServer | None = None

    @classmethod
    @asynccontextmanager
    async def running(
        cls, config: ServerConfig, store: Store | None = None, *, tracer_provider: TracerProvider | None = None
    ) -> AsyncIterator[CmoServer]:
        """Serve until the context exits, then shut down gracefully.

        `store` is a backend to use instead of the configured one; either way, payloads above the
        inline threshold go to the configured blob store (a directory or an S3 bucket),
        transparently to the engine. `tracer_provider` records the server's spans instead of the one
        the config describes.

        Raises:
            ExceptionGroup: a background loop crashed (it was logged as it happened); the body of
                the `async with` was cancelled and the server shut down.
        """
        failure: Exception | None = None
        auth = _authenticator(config)  # first: a bad key file stops the start before anything opens
        gates = _policy_gates(config)  # and so does a policy that does not build
        credentials = _server_credentials(config)  # and so do bad TLS files
        async with AsyncExitStack() as stack:
            telemetry = config.telemetry
            if tracer_provider is None and (tracer_provider := _configured_tracer_provider(telemetry)) is not None:
                stack.push_async_callback(asyncio.to_thread, tracer_provider.shutdown)  # flushes the exporter
            if store is None:
                store = await stack.enter_async_context(open_store(config))
            blobs = await stack.enter_async_context(open_blob_store(config))
            metrics = PrometheusMetrics()
            engine = Engine(
                OffloadingStore(store, blobs, threshold=config.blob.inline_threshold_bytes),
                config.limits,
                metrics=metrics,
                gate=gates,
            )
            # Artifact records carry no payloads: they use the backend directly.
            artifacts = Artifacts(store, blobs, max_bytes=config.blob.max_artifact_bytes)
            retention = Retention(store, blobs, blob_grace=config.retention.blob_gc_grace)
            await engine.start()
            stack.push_async_callback(engine.aclose)
            registry = Registry(cast(AgentStore, store), gate=None if gates is None else gates.registration)
            engine.on_poll(registry.note_poll)
            pollers = PollerBook()
            engine.on_poll_queues(pollers.polled)
            explainer = Explainer(cast(ProgressStore, store), pollers, registry)
            registry.on_unavailable(UnansweredRequests(engine, store).agent_unavailable)
            registry.on_deregistered(functools.partial(_worker_left, engine))
            # Leave room above the payload limit so the engine, not grpc, refuses a large state:
            # its message names the field.
            max_message = 2 * config.limits.max_payload_bytes + 1024 * 1024
            server = grpc.aio.server(
                interceptors=server_interceptors(tracer_provider),
                options=[
                    ("grpc.max_receive_message_length", max_message),
                    ("grpc.max_send_message_length", max_message),
                    ("grpc.so_reuseport", 0),
                    # gRPC core drops calls at random beyond 1000 waiting for the application;
                    # a burst of 1000+ starts (or long-polls) is normal load here.
                    ("grpc.server.max_pending_requests", 20_000),
                    ("grpc.server.max_pending_requests_hard_limit", 40_000),
                    ("grpc.max_concurrent_streams", config.rates.max_streams_per_connection),
                ],
            )
            # Clients' and agents' calls, per namespace; workers' task calls are paced by the tasks.
            rates = _namespace_rates(config)
            health_servicer = HealthServicer()
            reflection_servicer = reflection.aio.ReflectionServicer(
                [s.full_name for s in (*SERVICES, HEALTH, REFLECTION)]
            )
            # The standard services go through the same handler builder as the product's own, so
            # that garbage sent to them is INVALID_ARGUMENT too, not UNKNOWN with a class name.
            server.add_generic_rpc_handlers(
                (
                    service_handler(
                        SERVICES[0], RunServicer(engine, retention=retention, explainer=explainer), auth, rates=rates
                    ),
                    service_handler(
                        SERVICES[1], WorkerServicer(engine, artifacts=artifacts, tracer_provider=tracer_provider), auth
                    ),
                    service_handler(SERVICES[2], RegistryServicer(registry), auth, rates=rates),
                    service_handler(HEALTH, health_servicer),
                    service_handler(REFLECTION, reflection_servicer),
                )
            )
            ui = None
            if config.ui.enabled:  # bound before gRPC starts: an address in use stops the start first
                ui = UiServer(
                    ui_app(
                        engine,
                        registry=registry,
                        explainer=explainer,
                        pollers=pollers,
                        authenticator=auth,
                        rates=rates,
                        max_body=max_message,
                    ),
                    config.ui.listen,
                    optional=config.ui.optional,
                    grace=config.shutdown_grace.total_seconds(),
                    tls=config.tls,
                )
                stack.push_async_callback(ui.aclose)  # its socket, if the start fails after this
                if not ui.bind():
                    ui = None
            if credentials is None:
                port = server.add_insecure_port(config.listen)
            else:
                port = server.add_secure_port(config.listen, credentials)
            if port == 0:
                raise OSError(f"cannot listen on {config.listen}")
            await server.start()
            interval = config.health_check_interval.total_seconds()
            monitor = HealthMonitor(
                health_servicer,
                ["", *(s.full_name for s in SERVICES)],
                {"database": store.ping, "blob store": blobs.ping},
                interval=interval,
                timeout=min(interval, 5.0),
            )
            await monitor.check_now()
            metrics_port = 0
            if telemetry.metrics_listen:
                endpoint = await stack.enter_async_context(
                    serve_metrics(
                        telemetry.metrics_listen,
                        metrics,
                        store=store,
                        parked_polls=lambda: engine.parked_polls,
                        ready=functools.partial(_serving, health_servicer),
                        scraper=None if auth is None else functools.partial(_scrape_status, auth),
                    )
                )
                metrics_port = endpoint.port
            this = cls(server, engine, health_servicer, port, metrics=metrics, metrics_port=metrics_port)
            this.registry = registry
            if ui is not None:
                this._ui, this.ui_port = ui, ui.port
            if gates is not None:
                stack.callback(gates.decisions.close)
                this.policies = PolicyReloader(config.policy.directory, gates)
            # Entered last, so it is left first: its loops end before what they use is closed.
            loops = await stack.enter_async_context(asyncio.TaskGroup())
            this._loops.append(loops.create_task(log_crash("the health monitor", monitor.run), name="cmo-health"))
            this._loops.append(loops.create_task(log_crash("the agent registry", registry.run), name="cmo-registry"))
            if this._ui is not None:
                this._loops.append(loops.create_task(log_crash("the web UI", this._ui.run), name="cmo-ui"))
            if this.policies is not None:
                this._loops.append(
                    loops.create_task(log_crash("the policy reloader", this.policies.run), name="cmo-policy")
                )
            if (older_than := config.retention.older_than) is not None:
                schedule = functools.partial(
                    retention.run_schedule,
                    every=config.retention.prune_interval,
                    older_than=older_than,
                    statuses=config.retention.statuses,
                )
                this._loops.append(loops.create_task(log_crash("the retention schedule", schedule), name="cmo-prune"))
            if (replies := await _reply_consumer(config, engine, store, stack)) is not None:
                this._loops.append(loops.create_task(log_crash("the A2A reply consumer", replies.run), name="cmo-a2a"))
            # The engine logs a crash of its own loops; this brings the server down with it.
            this._loops.append(loops.create_task(engine.wait_background(), name="cmo-engine"))
            try:
                yield this
            except Exception as err:
                # The caller's own error: raised as it is below, once the loops are done, rather
                # than inside the task group's ExceptionGroup.
                failure = err
            finally:
                await this.stop(config.shutdown_grace.total_seconds())
        if failure is not None:
            raise failure

    @property
    def engine(self) -> Engine:
        """The engine behind the API."""
        return self._engine

    async def wait_for_termination(self) -> None:
        """Block until the server stops."""
        await self._server.wait_for_termination()

    async def stop(self, grace: float) -> None:
        """Graceful shutdown: health NOT_SERVING, parked polls return, in-flight RPCs get `grace` s."""
        if self._stopped:
            return
        self._stopped = True
        logger.info("shutting down: not serving, finishing in-flight calls (grace %.1fs)", grace)
        if self._ui is not None:
            await self._ui.aclose()  # before the loops are cancelled: its requests in flight finish
        for loop in self._loops:
            loop.cancel()  # the health monitor first of all: the status stays NOT_SERVING from here on
        if self._loops:
            await asyncio.wait(self._loops)
        await self._health.enter_graceful_shutdown()
        # Parked long-polls return empty now, so the grace period is spent on real work.
        await self._engine.aclose()
        await self._server.stop(grace)


def _authenticator(config: ServerConfig) -> Authenticator | None:
    """The check of every call's credentials, when CMO_AUTH=jwt or mtls."""
    auth = config.auth
    if not auth.enabled:
        return None
    if auth.mode == "mtls":
        try:
            subjects = load_subjects(auth.mtls_subjects_file)
        except (OSError, ValueError) as err:
            reason = str(err) if isinstance(err, ValueError) else "cannot be read"
            raise ConfigError("CMO_AUTH_MTLS_SUBJECTS_FILE", reason) from None
        logger.info("authentication on: client certificates, %d known subject(s)", len(subjects))
        return Authenticator(subjects=subjects)
    try:
        keys = load_keys(auth.keys_file, kid=auth.key_id, algorithm=auth.algorithm)
    except (OSError, ValueError) as err:
        raise ConfigError("CMO_AUTH_KEYS_FILE", str(err) if isinstance(err, ValueError) else "cannot be read") from None
    logger.info("authentication on: %d key(s), issuer %s, audience %s", len(keys), auth.issuer, auth.audience)
    return Authenticator(keys, issuer=auth.issuer, audience=auth.audience)


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS for the gRPC port, when CMO_TLS_CERT_FILE is set; client certificates required with a client CA."""
    material = config.tls.read()
    if material is None:
        return None
    logger.info("TLS on%s", ", client certificates required" if material.client_ca is not None else "")
    return grpc.ssl_server_credentials(
        [(material.private_key, material.certificate_chain)],
        root_certificates=material.client_ca,
        require_client_auth=material.client_ca is not None,
    )


def _namespace_rates(config: ServerConfig) -> NamespaceRates | None:
    limits = config.rates
    if not limits.calls_per_second:
        return None
    logger.info("rate limit: %d calls/s per namespace, bursts of %d", limits.calls_per_second, limits.bucket_size)
    return NamespaceRates(limits.calls_per_second, limits.bucket_size)


def _policy_gates(config: ServerConfig) -> PolicyGates | None:
    """The step and registration gates, when CMO_POLICY_DIR names policies; ConfigError if they do not build."""
    if not config.policy.enabled:
        return None
    try:
        bundle = PolicyBundle.load(config.policy.directory)
    except PolicyError as err:
        raise ConfigError("CMO_POLICY_DIR", f"names policies that do not build: {err}") from None
    logger.info("policies on: bundle %s (%s)", bundle.hash[:12], ", ".join(bundle.policies) or "no policy")
    return PolicyGates(bundle, DecisionLog(config.policy.decision_log))


def _scrape_status(auth: Authenticator, header: str) -> int:
    """What a scrape of /metrics with this Authorization header gets: 200, or 401/403."""
    try:
        principal = auth.principal([("authorization", header)] if header else [])
    except CmoServerError:
        return 401
    return 200 if principal.has_scope(METRICS_SCOPE) else 403


def _worker_left(engine: Engine, agent: Agent) -> None:
    """A worker that deregisters has stopped polling: its polls end (see `Engine.worker_departed`)."""
    if agent.kind == "worker":
        # Called within the Deregister call: its caller's worker, as that caller's leases name it.
        engine.worker_departed(lease_owner(agent.metadata.get("worker_id", agent.agent_id)))


async def _reply_consumer(
    config: ServerConfig, engine: Engine, store: Store, stack: AsyncExitStack
) -> ReplyConsumer | None:
    """The consumer of agents' replies to runs, when REDIS_URL (or NATS_URL) and CMO_A2A_KEYS say where and how."""
    messaging = config.messaging
    if not (messaging.redis_url or messaging.nats_url):
        return None
    if not messaging.a2a_keys:
        logger.warning("agents' messaging is set but CMO_A2A_KEYS is not: agents' replies to runs are not consumed")
        return None
    from cmo.a2a import HmacKeys
    from cmo.a2a.transports import Transport

    transport: Transport
    if messaging.redis_url:
        from cmo.a2a.transports.redis import RedisTransport

        transport = RedisTransport.from_url(messaging.redis_url)
    else:
        from cmo.a2a.transports.nats import NatsTransport

        transport = await NatsTransport.connect(messaging.nats_url)
    stack.push_async_callback(transport.close)
    keys = HmacKeys(dict(messaging.a2a_keys), current=messaging.a2a_keys[0][0])
    consumer = ReplyConsumer(engine, store, transport, keys=keys, prefix=messaging.a2a_prefix)
    logger.info("consuming agents' replies on %s", consumer.pattern)
    return consumer


def _configured_tracer_provider(config: TelemetryConfig) -> TracerProvider | None:
    provider = tracer_provider(config)
    if provider is not None:
        logger.info("traces go to %s (service %s)", config.traces_exporter, config.service_name)
    return provider


async def _serving(health_servicer: health.aio.HealthServicer) -> bool:
    """Whether the gRPC health status of the whole server is SERVING (what /readyz answers).

    Asks the servicer's own Check: the status of "" is always set, so the call context it would
    use to report an unknown service is never touched.
    """
    reply = await health_servicer.Check(health_pb2.HealthCheckRequest(service=""), None)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def serve_forever(config: ServerConfig, *, announce: bool = True) -> None:
    """Serve until SIGINT or SIGTERM.

    Raises:
        ExceptionGroup: a background loop crashed, which stopped the server (see `CmoServer.running`).
    """
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with CmoServer.running(config) as server:
        host = config.listen.rpartition(":")[0]
        address = f"{host}:{server.port}"
        logger.info("serving on %s", address)
        if announce:
            print(f"cmo-server listening on {address}", flush=True)
        if server.ui_port:
            ui_host = config.ui.listen.rpartition(":")[0]
            scheme = "https" if config.tls.cert_file else "http"
            ui_address = f"{scheme}://{'127.0.0.1' if ui_host in ('0.0.0.0', '') else ui_host}:{server.ui_port}"
            logger.info("web UI on %s", ui_address)
            if announce:
                print(f"web UI on {ui_address}", flush=True)
        if server.policies is not None:
            loop.add_signal_handler(signal.SIGHUP, server.policies.reload_now)
        await stop.wait()
