"""ServerConfig from the environment: a group per concern, every variable checked by name, Postgres
from POSTGRES_*, flags over variables, misspelt variables pointed out, and secrets kept out of
everything that is printed or logged."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from cmo_server.cli import main
from cmo_server.config import (
    AuthConfig,
    BlobConfig,
    ConfigError,
    EngineLimits,
    MessagingConfig,
    PolicyConfig,
    RateLimitConfig,
    RetentionConfig,
    ServerConfig,
    StoreConfig,
    TelemetryConfig,
    TLSConfig,
    UIConfig,
    parse_otlp_headers,
    unknown_settings,
)

ROOT = Path(__file__).resolve().parents[2]
S3 = {
    "CMO_BLOB_BACKEND": "s3",
    "S3_ENDPOINT": "https://s3.example.com",
    "S3_BUCKET": "cmo-blobs",
    "S3_ACCESS_KEY": "AKIAEXAMPLE",
    "S3_SECRET_KEY": "s3-secret",
}
PG = {"POSTGRES_HOST": "db.internal"}

# Each variable with a bad value, and what else must be set for it to be read.
BAD_VALUES: list[tuple[str, str, dict[str, str]]] = [
    ("CMO_LISTEN", "nowhere", {}),
    ("CMO_DATABASE_URL", "mysql://u:pw@h/db", {}),
    ("CMO_SQLITE_PATH", "/", {}),
    ("POSTGRES_HOST", "db host", {}),
    ("POSTGRES_PORT", "five", PG),
    ("POSTGRES_PORT", "70000", PG),
    ("POSTGRES_SSLMODE", "sometimes", PG),
    ("CMO_POOL_SIZE", "0", {}),
    ("CMO_HEALTH_CHECK_SECONDS", "soon", {}),
    ("CMO_SHUTDOWN_GRACE_SECONDS", "-1", {}),
    ("CMO_LOG_LEVEL", "loud", {}),
    ("LOG_LEVEL", "loud", {}),
    ("CMO_LOG_FORMAT", "xml", {}),
    ("CMO_BLOB_BACKEND", "gcs", {}),
    ("CMO_BLOB_DIR", "   ", {}),
    ("S3_ENDPOINT", "ftp://files:21", S3),
    ("S3_BUCKET", "Blobs", S3),
    ("S3_ACCESS_KEY", "", S3),
    ("S3_SECRET_KEY", "", S3),
    ("S3_SECURE", "maybe", S3),
    ("S3_PREFIX", "/cmo/", S3),
    ("CMO_S3_CA_FILE", "/nonexistent/ca.pem", S3),
    ("CMO_S3_CREATE_BUCKET", "sometimes", S3),
    ("CMO_INLINE_THRESHOLD_BYTES", "-1", {}),
    ("CMO_MAX_ARTIFACT_BYTES", "0", {}),
    ("CMO_MAX_PAYLOAD_BYTES", "100", {}),
    ("CMO_TASK_LEASE_SECONDS", "0", {}),
    ("CMO_SWEEP_INTERVAL_SECONDS", "x", {}),
    ("CMO_FALLBACK_SWEEP_SECONDS", "0.5", {"CMO_SWEEP_INTERVAL_SECONDS": "2"}),
    ("CMO_METRICS_LISTEN", "9464", {}),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317", {}),
    ("OTEL_EXPORTER_OTLP_HEADERS", "authorization", {}),
    ("OTEL_TRACES_EXPORTER", "zipkin", {}),
    ("CMO_RETENTION", "forever", {}),
    ("CMO_RETENTION", "30", {}),  # a bare number: 30 seconds or 30 days? A unit is required
    ("CMO_PRUNE_INTERVAL", "3600", {}),
    ("CMO_RETENTION_STATUSES", "running", {}),
    ("CMO_PRUNE_INTERVAL", "hourly", {}),
    ("CMO_BLOB_GC_GRACE", "-1h", {}),
    ("REDIS_URL", "http://redis:6379", {}),
    ("CMO_A2A_KEYS", "no-equals-sign", {}),
    ("CMO_A2A_KEYS", "k1=too-short", {}),
    ("CMO_A2A_PREFIX", "Not.A.Token", {}),
    ("CMO_AUTH", "maybe", {}),
    ("CMO_AUTH_KEYS_FILE", "", {"CMO_AUTH": "jwt", "CMO_AUTH_ISSUER": "https://i"}),
    ("CMO_AUTH_ALGORITHM", "none", {}),
    ("CMO_AUTH_ISSUER", "", {"CMO_AUTH": "jwt", "CMO_AUTH_KEYS_FILE": __file__}),
    ("CMO_AUTH_MTLS_SUBJECTS_FILE", "", {"CMO_AUTH": "mtls"}),
    ("CMO_TLS_CERT_FILE", "", {"CMO_TLS_KEY_FILE": __file__}),
    ("CMO_TLS_CERT_FILE", "/nonexistent/cert.pem", {"CMO_TLS_KEY_FILE": __file__}),
    ("CMO_TLS_KEY_FILE", "", {"CMO_TLS_CERT_FILE": __file__}),
    ("CMO_TLS_KEY_FILE", "/nonexistent/key.pem", {"CMO_TLS_CERT_FILE": __file__}),
    ("CMO_TLS_CLIENT_CA_FILE", __file__, {}),  # client certificates need TLS to be asked for
    ("CMO_TLS_CLIENT_CA_FILE", "/nonexistent/ca.pem", {"CMO_TLS_CERT_FILE": __file__, "CMO_TLS_KEY_FILE": __file__}),
    ("CMO_TLS_CLIENT_CA_FILE", "", {"CMO_AUTH": "mtls", "CMO_AUTH_MTLS_SUBJECTS_FILE": __file__}),
    ("CMO_POLICY_DIR", "/nonexistent/policies", {}),
    ("CMO_RATE_LIMIT", "-1", {}),
    ("CMO_RATE_LIMIT", "fast", {}),
    ("CMO_RATE_BURST", "10", {}),  # a burst of no rate
    ("CMO_RATE_BURST", "-5", {"CMO_RATE_LIMIT": "10"}),
    ("CMO_MAX_STREAMS_PER_CONNECTION", "0", {}),
    ("CMO_POLICY_DECISION_LOG", "/nonexistent/dir/decisions.jsonl", {"CMO_POLICY_DIR": str(Path(__file__).parent)}),
    ("CMO_POLICY_DECISION_LOG", "decisions.jsonl", {}),  # without policies there is no decision
    ("NATS_URL", "http://nats:4222", {}),
    ("REDIS_HOST", "/var/run/redis", {}),
    ("REDIS_PORT", "0", {"REDIS_HOST": "redis"}),
    ("CMO_UI_LISTEN", "8233", {}),
]
# Read as given: any text is a valid value.
FREE_TEXT = {
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "REDIS_PASSWORD",
    "S3_REGION",
    "OTEL_SERVICE_NAME",
    "CMO_AUTH_KEY_ID",
    "CMO_AUTH_AUDIENCE",
}
ALL_VARIABLES = ServerConfig.variables()
GROUPS = (
    StoreConfig,
    BlobConfig,
    EngineLimits,
    TelemetryConfig,
    RetentionConfig,
    MessagingConfig,
    AuthConfig,
    PolicyConfig,
    RateLimitConfig,
    TLSConfig,
    UIConfig,
)
# Environment variables hold no NUL, and no lone surrogates but the \udc80-\udcff of undecodable bytes.
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1)


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI tests read os.environ: the developer's own settings must not leak in."""
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("name", "value", "context"), BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES])
def test_a_bad_value_raises_a_config_error_naming_its_variable(name: str, value: str, context: dict[str, str]):
    with pytest.raises(ConfigError) as caught:
        ServerConfig.from_env({**context, name: value})
    assert caught.value.variable == name, str(caught.value)
    assert str(caught.value) == f"{name} {caught.value.reason}"
    assert caught.value.reason
    assert not caught.value.reason.startswith(name)


def test_a_config_error_carries_its_variable_as_a_field():
    err = ConfigError("CMO_LISTEN", "must be host:port, got 'nowhere'")
    assert (err.variable, err.reason) == ("CMO_LISTEN", "must be host:port, got 'nowhere'")
    assert str(err) == "CMO_LISTEN must be host:port, got 'nowhere'"
    assert isinstance(err, ValueError)


def test_every_variable_is_checked_or_free_text_and_documented():
    checked = {name for name, _, _ in BAD_VALUES}
    assert checked | FREE_TEXT == ALL_VARIABLES
    readme = (ROOT / "README.md").read_text()
    undocumented = {name for name in ALL_VARIABLES if f"`{name}`" not in readme}
    assert not undocumented


class Recording(Mapping[str, str]):
    """An environment that notes which variables were looked up."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.read = env, set[str]()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.env[key]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("from_env looks variables up by name")

    def __len__(self) -> int:
        return len(self.env)


@pytest.mark.parametrize("env", [{}, PG, {"REDIS_HOST": "redis"}, {**S3, **PG}])
def test_only_listed_variables_are_read(env: dict[str, str]):
    recording = Recording(env)
    ServerConfig.from_env(recording)
    assert recording.read <= ALL_VARIABLES


@pytest.mark.parametrize("group", GROUPS, ids=lambda group: group.__name__)
def test_each_group_reads_only_its_own_variables(group: type[StoreConfig]):
    recording = Recording({**S3, **PG, "REDIS_HOST": "redis"})
    group.from_env(recording)
    assert recording.read <= set(group.VARIABLES)
    assert recording.read  # and it does read them


def test_the_groups_share_no_variable_and_make_up_the_config():
    listed = [name for group in GROUPS for name in group.VARIABLES] + list(ServerConfig.VARIABLES)
    assert len(listed) == len(set(listed))
    assert set(listed) == ALL_VARIABLES
    config = ServerConfig.from_env({"CMO_POOL_SIZE": "3", "CMO_LOG_FORMAT": "json", "CMO_RETENTION": "30d"})
    assert (config.store.pool_size, config.telemetry.log_format) == (3, "json")
    assert config.retention.older_than == timedelta(days=30)


# --- Postgres from POSTGRES_* ---------------------------------------------------------------------


def test_postgres_url_is_built_from_the_standard_variables():
    env = {
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6432",
        "POSTGRES_USER": "cmo",
        "POSTGRES_PASSWORD": "p@ss/w:rd#?%&=' x",
        "POSTGRES_DB": "orchestrator",
        "POSTGRES_SSLMODE": "verify-full",
    }
    url = ServerConfig.from_env(env).store.database_url
    assert conninfo_to_dict(url) == {
        "host": "db.internal",
        "port": "6432",
        "user": "cmo",
        "password": "p@ss/w:rd#?%&=' x",
        "dbname": "orchestrator",
        "sslmode": "verify-full",
    }
    assert "p@ss" not in ServerConfig.from_env(env).redacted()["store"]["database_url"]


def test_postgres_defaults_follow_the_official_image():
    assert conninfo_to_dict(StoreConfig.from_env(PG).database_url) == {
        "host": "db.internal",
        "port": "5432",
        "user": "postgres",
        "dbname": "postgres",
    }
    only_user = StoreConfig.from_env({**PG, "POSTGRES_USER": "cmo"}).database_url
    assert conninfo_to_dict(only_user)["dbname"] == "cmo"


@pytest.mark.parametrize(
    ("host", "parsed"),
    [
        ("10.0.0.5", "10.0.0.5"),
        ("::1", "::1"),
        ("[fd00::5]", "fd00::5"),
        ("/var/run/postgresql", "/var/run/postgresql"),
    ],
)
def test_postgres_host_may_be_an_ip_or_a_socket_directory(host: str, parsed: str):
    assert conninfo_to_dict(StoreConfig.from_env({"POSTGRES_HOST": host}).database_url)["host"] == parsed


@settings(max_examples=200, deadline=None)
@given(user=text, password=text, database=text)
def test_any_user_password_and_database_survive_the_url(user: str, password: str, database: str):
    env = {**PG, "POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": database}
    parsed = conninfo_to_dict(StoreConfig.from_env(env).database_url)
    assert (parsed["user"], parsed["password"], parsed["dbname"]) == (user, password, database)


def test_cmo_database_url_wins_over_postgres_variables():
    env = {"CMO_DATABASE_URL": "postgresql://a@primary/cmo", **PG, "POSTGRES_PORT": "not-read"}
    assert StoreConfig.from_env(env).database_url == "postgresql://a@primary/cmo"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:p@ss@h/db", "has an @ in its user or password"),
        ("postgresql://u:p/ss@h/db", "has a port that is not a number"),
        ("postgresql://h/db?nonsense=1", "must be a postgresql://"),
        ("host=h password", "must be a postgresql://"),
    ],
)
def test_a_malformed_database_url_is_reported_without_its_password(url: str, message: str):
    with pytest.raises(ConfigError, match=message) as caught:
        ServerConfig.from_env({"CMO_DATABASE_URL": url})
    assert caught.value.variable == "CMO_DATABASE_URL"
    assert "ss@" not in str(caught.value)


def test_libpq_keyword_strings_are_accepted_and_redacted():
    config = StoreConfig.from_env({"CMO_DATABASE_URL": "host=db dbname=cmo password='s3 cret' sslpassword=k3y"})
    assert config.redacted()["database_url"] == "host=db dbname=cmo password=*** sslpassword=***"


# --- Redis -------------------------------------------------------------------------------------------


def test_redis_url_is_read_or_built_and_redacted():
    assert MessagingConfig.from_env({}).redis_url == ""
    assert MessagingConfig.from_env({"REDIS_URL": "rediss://:tok@cache:6380/2"}).redacted()["redis_url"] == (
        "rediss://:***@cache:6380/2"
    )
    built = MessagingConfig.from_env({"REDIS_HOST": "redis", "REDIS_PASSWORD": "a@b/c"})
    assert urllib.parse.unquote(urllib.parse.urlsplit(built.redis_url).password or "") == "a@b/c"
    assert built.redacted()["redis_url"] == "redis://:***@redis:6379/0"
    both = MessagingConfig.from_env({"REDIS_URL": "redis://primary:6379/0", "REDIS_HOST": "other"})
    assert both.redis_url == "redis://primary:6379/0"


# --- flags over variables ----------------------------------------------------------------------------


def run_config(*args: str, env: dict[str, str | None] | None = None) -> Result:
    result = CliRunner().invoke(main, ["config", *args], env=env)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def shown_config(*args: str, env: dict[str, str | None] | None = None) -> dict[str, Any]:
    result = run_config(*args, env=env)
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def test_flags_win_and_hide_their_variables_even_malformed_ones():
    env: dict[str, str | None] = {
        "CMO_LISTEN": "nowhere",
        "CMO_POOL_SIZE": "many",
        "CMO_DATABASE_URL": "mysql://x",
        "LOG_LEVEL": "loud",
    }
    flags = ("--listen", "0.0.0.0:7000", "--pool-size", "4", "--database-url", "postgresql://h/db")
    shown = shown_config(*flags, "--log-level", "debug", env=env)
    assert (shown["listen"], shown["store"]["pool_size"], shown["store"]["database_url"]) == (
        "0.0.0.0:7000",
        4,
        "postgresql://h/db",
    )
    assert shown["telemetry"]["log_level"] == "DEBUG"
    # No flag: the variable is read.
    assert shown_config(env={"CMO_DATABASE_URL": "postgresql://h/db", "CMO_POOL_SIZE": "3"})["store"]["pool_size"] == 3
    # --database-url hides POSTGRES_* too, and --dev (no database URL) does as well.
    assert shown_config("--database-url", "postgresql://h/db", env={**PG, "POSTGRES_PORT": "bad"})
    assert shown_config("--dev", env={**PG, "POSTGRES_PORT": "bad"})["store"]["database_url"] == ""


def test_cmo_server_config_flags_beat_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    env: dict[str, str | None] = {
        "CMO_LISTEN": "0.0.0.0:1",
        "CMO_DATABASE_URL": "postgresql://env@env-db/cmo",
        "CMO_POOL_SIZE": "2",
        "CMO_LOG_LEVEL": "ERROR",
        "CMO_LOG_FORMAT": "text",
        "CMO_METRICS_LISTEN": "0.0.0.0:2",
        "CMO_BLOB_DIR": "/env/blobs",
    }
    shown = shown_config(
        *("--listen", "127.0.0.1:9", "--database-url", "postgresql://flag@flag-db/cmo", "--pool-size", "5"),
        *("--log-level", "debug", "--log-format", "json", "--metrics-listen", "", "--blob-dir", str(tmp_path)),
        env=env,
    )
    assert shown["listen"] == "127.0.0.1:9"
    assert (shown["store"]["database_url"], shown["store"]["pool_size"]) == ("postgresql://flag@flag-db/cmo", 5)
    telemetry = shown["telemetry"]
    assert (telemetry["log_level"], telemetry["log_format"], telemetry["metrics_listen"]) == ("DEBUG", "json", "")
    assert shown["blob"]["dir"] == str(tmp_path)
    shown = shown_config("--dev", "--db", str(tmp_path / "x.db"), env={"CMO_SQLITE_PATH": "/"})
    assert shown["store"]["sqlite_path"] == str(tmp_path / "x.db")


def test_config_shows_the_settings_by_group():
    shown = shown_config(env={"CMO_DATABASE_URL": "postgresql://h/db", "CMO_RETENTION": "30d"})
    assert set(shown) == {
        "listen",
        "health_check_s",
        "shutdown_grace_s",
        "store",
        "blob",
        "limits",
        "telemetry",
        "retention",
        "messaging",
        "auth",
        "tls",
        "policy",
        "rates",
        "ui",
    }
    assert shown["ui"] == {"listen": "off"}
    assert shown["store"] == {"database_url": "postgresql://h/db", "sqlite_path": "", "pool_size": 8}
    assert shown["limits"]["task_lease_s"] == 30
    assert shown["retention"]["older_than"] == str(timedelta(days=30))
    assert shown["messaging"] == {"redis_url": "", "nats_url": "", "a2a_keys": [], "a2a_prefix": "qa"}


def test_the_web_ui_is_off_unless_asked_for_and_on_beside_the_grpc_port_for_start_dev():
    assert not ServerConfig.from_env({}).ui.enabled
    assert ServerConfig.from_env({"CMO_UI_LISTEN": "0.0.0.0:9000"}).ui == UIConfig(listen="0.0.0.0:9000")
    dev = ServerConfig.from_env({}).with_dev_ui({})
    assert dev.ui == UIConfig(listen="127.0.0.1:8233", optional=True)  # a port in use: no UI, a warning
    everywhere = ServerConfig.from_env({"CMO_LISTEN": "0.0.0.0:7233"})
    assert everywhere.with_dev_ui({}).ui.listen == "0.0.0.0:8233"
    assert not ServerConfig.from_env({"CMO_UI_LISTEN": ""}).with_dev_ui({"CMO_UI_LISTEN": ""}).ui.enabled
    chosen = {"CMO_UI_LISTEN": "127.0.0.1:9999"}
    assert ServerConfig.from_env(chosen).with_dev_ui(chosen).ui == UIConfig(listen="127.0.0.1:9999")
    with pytest.raises(ConfigError, match="CMO_UI_LISTEN has no valid port"):
        ServerConfig.from_env({"CMO_UI_LISTEN": "127.0.0.1:70000"})


@pytest.mark.parametrize(
    ("env", "args", "metrics"),
    [
        ({}, [], "127.0.0.1:9464"),
        ({"CMO_LISTEN": "0.0.0.0:7233"}, [], "0.0.0.0:9464"),
        ({"CMO_LISTEN": "[::1]:7233"}, [], "[::1]:9464"),
        ({}, ["--listen", "10.1.2.3:7000"], "10.1.2.3:9464"),
        ({"CMO_LISTEN": "0.0.0.0:7233", "CMO_METRICS_LISTEN": "127.0.0.1:9000"}, [], "127.0.0.1:9000"),
        ({}, ["--metrics-listen", "0.0.0.0:9464"], "0.0.0.0:9464"),
        ({"CMO_METRICS_LISTEN": ""}, [], ""),
    ],
)
def test_start_serves_metrics_on_the_grpc_host_unless_told_otherwise(
    env: dict[str, str], args: list[str], metrics: str
):
    shown = shown_config(*args, env={"CMO_DATABASE_URL": "postgresql://h/db", **env})
    assert shown["telemetry"]["metrics_listen"] == metrics


def test_start_dev_serves_metrics_only_when_told():
    assert shown_config("--dev", env={"CMO_LISTEN": "0.0.0.0:7233"})["telemetry"]["metrics_listen"] == ""
    told = shown_config("--dev", env={"CMO_METRICS_LISTEN": "127.0.0.1:9000"})
    assert told["telemetry"]["metrics_listen"] == "127.0.0.1:9000"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--listen", "nowhere"], "--listen"),
        (["--pool-size", "0"], "--pool-size"),
        (["--pool-size", "few"], "--pool-size"),
        (["--metrics-listen", "9464"], "--metrics-listen"),
        (["--database-url", "mysql://h/db"], "--database-url"),
        (["--log-level", "loud"], "--log-level"),
        (["--log-format", "xml"], "--log-format"),
        (["--blob-backend", "gcs"], "--blob-backend"),
        (["--blob-dir", "  "], "--blob-dir"),
        (["--dev", "--db", "/"], "--db"),
    ],
)
def test_a_bad_flag_is_named_as_the_flag(monkeypatch: pytest.MonkeyPatch, args: list[str], flag: str):
    monkeypatch.setenv("CMO_DATABASE_URL", "postgresql://h/db")
    result = run_config(*args)
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output


def test_start_without_a_database_names_the_variables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POSTGRES_PASSWORD", "hunter2")
    result = run_config()
    assert result.exit_code == 1
    assert "CMO_DATABASE_URL" in result.output
    assert "POSTGRES_HOST" in result.output
    assert "POSTGRES_PASSWORD set, but not POSTGRES_HOST" in result.output
    assert "hunter2" not in result.output


# --- unknown variables ---------------------------------------------------------------------------------

# Where the scan below looks for CMO_* names: the code, its docs, its deployment.
SCANNED = (
    "README.md",
    "Makefile",
    "docker-compose.yml",
    ".ci",
    "bench",
    "deploy",
    "examples",
    "scripts",
    "sdk",
    "server",
    "tests",
)
# Files that spell unknown names on purpose, to test the warning.
MISSPELT_ON_PURPOSE = {Path(__file__).resolve(), ROOT / "tests" / "e2e" / "test_server_cli.py"}
NOT_VARIABLES = {"CMO_MIGR"}  # the Postgres migration lock's key, spelt in bytes
# docker compose's own substitutions: they reach the server's container under the standard names
# (S3_BUCKET ...), never as themselves, so the server warns of them like of any unknown name.
COMPOSE_ONLY = {"CMO_POSTGRES_PASSWORD", "CMO_S3_ACCESS_KEY", "CMO_S3_SECRET_KEY", "CMO_S3_BUCKET"}
COMPOSE_FILES = {ROOT / "docker-compose.yml", ROOT / "deploy" / "compose.env.example", ROOT / "deploy" / "README.md"}


def cmo_names_in_the_repository() -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for top in SCANNED:
        paths = [ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*")
        for path in paths:
            if not path.is_file() or {"__pycache__", "node_modules"} & set(path.parts) or path in MISSPELT_ON_PURPOSE:
                continue
            # Not the example of a warning: "unknown setting CMO_LISTN (did you mean ...".
            for name in re.findall(r"(?<!unknown setting )\bCMO_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="ignore")):
                found.setdefault(name, set()).add(path)
    return found


def test_an_unknown_cmo_variable_is_reported_with_the_closest_known_one():
    assert unknown_settings(["CMO_LISTN"]) == ["unknown setting CMO_LISTN (did you mean CMO_LISTEN?)"]
    assert unknown_settings(["PATH", "CMO_S3_BUCKET", "CMO_POOLSIZE"]) == [
        "unknown setting CMO_POOLSIZE (did you mean CMO_POOL_SIZE?)",
        "unknown setting CMO_S3_BUCKET (did you mean S3_BUCKET?)",
    ]
    assert unknown_settings(["CMO_XYZZY"]) == ["unknown setting CMO_XYZZY"]


def test_what_the_server_or_another_part_of_cmo_reads_is_not_reported():
    others = ["CMO_ADDRESS", "CMO_TEST_POSTGRES_URL", "CMO_TEST_S3_ENDPOINT", "CMO_BENCH_POSTGRES_URL"]
    standard_names_of_other_programs = ["S3_REGIN", "POSTGRES_HOSTNAME", "OTEL_RESOURCE_ATTRIBUTES", "HOME"]
    assert unknown_settings([*ALL_VARIABLES, *others, *standard_names_of_other_programs]) == []


def test_every_cmo_variable_in_the_repository_is_accounted_for():
    found = cmo_names_in_the_repository()
    assert {"CMO_LISTEN", "CMO_ADDRESS", "CMO_TEST_POSTGRES_URL", "CMO_BENCH_POSTGRES_URL"} <= found.keys()
    reported = {name for name in found if unknown_settings([name])} - NOT_VARIABLES
    assert reported == COMPOSE_ONLY, "a CMO_* variable that nothing reads, or that the warning does not know"
    for name in COMPOSE_ONLY:
        assert found[name] <= COMPOSE_FILES, f"{name} is read outside docker compose: {found[name]}"


def test_cmo_server_config_warns_of_an_unknown_variable_on_stderr():
    result = run_config("--dev", env={"CMO_LISTN": "0.0.0.0:7233"})
    assert result.exit_code == 0, result.output
    assert "warning: unknown setting CMO_LISTN (did you mean CMO_LISTEN?)\n" in result.stderr
    assert json.loads(result.stdout)["listen"] == "127.0.0.1:7233"  # the typo changed nothing


# --- secrets never shown -----------------------------------------------------------------------------

secrets = text.map(lambda s: f"Zq9{s}Qz")  # a marker that nothing else contains


def shown_forms(secret: str) -> list[str]:
    return [secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret), "Zq9"]


@settings(max_examples=150, deadline=None)
@given(password=secrets, s3_key=secrets, header=secrets, redis=secrets)
def test_secrets_never_show_in_redacted_nor_repr(password: str, s3_key: str, header: str, redis: str):
    env = {
        **S3,
        "S3_SECRET_KEY": s3_key,
        **PG,
        "POSTGRES_PASSWORD": password,
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization={urllib.parse.quote(header)},x-team=core",
        "REDIS_HOST": "redis",
        "REDIS_PASSWORD": redis,
    }
    config = ServerConfig.from_env(env)
    assert config.blob.s3.secret_key == s3_key
    assert parse_otlp_headers(config.telemetry.otlp_headers)["authorization"] == header
    out = json.dumps(config.redacted()) + repr(config) + str(config) + repr(config.blob.s3)
    for secret in (password, s3_key, header, redis):
        for form in shown_forms(secret):
            assert form not in out


@settings(max_examples=150, deadline=None)
@given(password=secrets, where=st.sampled_from(["userinfo", "query", "keyword"]))
def test_a_database_url_given_whole_never_shows_its_password(password: str, where: str):
    quoted = urllib.parse.quote(password, safe="")
    url = {
        "userinfo": f"postgresql://cmo:{quoted}@db:5432/cmo",
        "query": f"postgresql://cmo@db:5432/cmo?sslmode=require&password={quoted}",
        "keyword": "host=db dbname=cmo password='{}'".format(password.replace("\\", "\\\\").replace("'", "\\'")),
    }[where]
    config = ServerConfig.from_env({"CMO_DATABASE_URL": url, "REDIS_URL": f"redis://u:{quoted}@r:6379/0"})
    out = json.dumps(config.redacted()) + repr(config)
    for form in shown_forms(password):
        assert form not in out
    assert conninfo_to_dict(config.store.database_url)["password"] == password


def test_redacted_covers_every_setting_and_is_json():
    config = ServerConfig.from_env({"CMO_RETENTION": "30d"})
    shown = json.loads(json.dumps(config.redacted()))
    assert shown["retention"]["older_than"] == str(timedelta(days=30))
    for group, key in [("telemetry", "log_level"), ("telemetry", "log_format"), ("limits", "fallback_sweep_s")]:
        assert key in shown[group]
    for key in ("listen", "shutdown_grace_s", "health_check_s"):
        assert key in shown
    assert re.fullmatch(r"ServerConfig\(listen='127\.0\.0\.1:7233', .*\)", repr(config))


@pytest.mark.parametrize("name", ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"])
def test_bytes_that_are_not_utf8_are_named_not_a_traceback(name: str):
    undecodable = b"\xffpw".decode("utf-8", "surrogateescape")  # how os.environ holds such bytes
    with pytest.raises(ConfigError, match=f"^{name} is not valid UTF-8$"):
        ServerConfig.from_env({**PG, name: undecodable})
    with pytest.raises(ConfigError, match=r"^CMO_DATABASE_URL is not valid UTF-8$"):
        ServerConfig.from_env({"CMO_DATABASE_URL": f"postgresql://u:{undecodable}@h/db"})


def test_start_refuses_to_answer_every_caller_unless_told(monkeypatch: pytest.MonkeyPatch):
    from click.testing import CliRunner

    from cmo_server.cli import main

    monkeypatch.delenv("CMO_AUTH", raising=False)
    result = CliRunner().invoke(main, ["start"], env={"CMO_DATABASE_URL": "postgresql://db.invalid/cmo"})
    assert result.exit_code == 1
    assert "no authentication: set CMO_AUTH=jwt with CMO_AUTH_KEYS_FILE and CMO_AUTH_ISSUER" in result.output
    assert "CMO_AUTH=none" in result.output
    assert "Traceback" not in result.output
