"""`cmo-server` as a real process: `config` prints JSON without the secrets, or one line naming the
variable; a misspelt variable is warned of at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmo_server.config import ServerConfig

pytestmark = pytest.mark.e2e

PASSWORD = "pg-S3cret@/:%"
S3_SECRET = "s3-S3cret+/="
TOKEN = "Bearer otlp-S3cret"


def cmo_server(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ServerConfig.variables()}
    command = [sys.executable, "-m", "cmo_server.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**clean, **env}, check=False)


def test_config_prints_the_effective_settings_without_secrets():
    result = cmo_server(
        "config",
        "--pool-size",
        "3",
        POSTGRES_HOST="db",
        POSTGRES_USER="cmo",
        POSTGRES_PASSWORD=PASSWORD,
        CMO_POOL_SIZE="12",
        CMO_BLOB_BACKEND="s3",
        S3_ENDPOINT="http://minio:9000",
        S3_BUCKET="cmo",
        S3_ACCESS_KEY="cmo-access",
        S3_SECRET_KEY=S3_SECRET,
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20otlp-S3cret",
        REDIS_URL="redis://:redis-S3cret@redis:6379/0",
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["store"]["database_url"] == "postgresql://cmo:***@db:5432/cmo"
    assert shown["store"]["pool_size"] == 3  # the flag beats CMO_POOL_SIZE
    assert shown["telemetry"]["metrics_listen"] == "127.0.0.1:9464"  # as `start` would serve: beside gRPC
    assert (shown["blob"]["s3"]["secret_key"], shown["telemetry"]["otlp_headers"]) == ("***", {"authorization": "***"})
    assert shown["messaging"]["redis_url"] == "redis://:***@redis:6379/0"
    assert "S3cret" not in result.stdout + result.stderr


def test_config_dev_shows_the_sqlite_settings():
    result = cmo_server("config", "--dev", "--db", "data/dev.db", CMO_DATABASE_URL="postgresql://u:pw@h/db")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["store"]["database_url"], shown["store"]["sqlite_path"]) == ("", "data/dev.db")
    assert shown["blob"]["dir"] == "data/blobs"


@pytest.mark.parametrize(
    ("env", "args", "code", "named"),
    [
        ({"CMO_DATABASE_URL": "postgresql://h/db", "CMO_LISTEN": "nowhere"}, [], 1, "CMO_LISTEN"),
        ({"POSTGRES_HOST": "db", "POSTGRES_PORT": "fivefourthreetwo"}, [], 1, "POSTGRES_PORT"),
        ({"CMO_DATABASE_URL": "postgresql://u:p@ss@h/db"}, [], 1, "CMO_DATABASE_URL"),
        ({"POSTGRES_PASSWORD": PASSWORD}, [], 1, "POSTGRES_HOST"),
        ({"LOG_LEVEL": "chatty"}, ["--dev"], 1, "LOG_LEVEL"),
        ({"CMO_DATABASE_URL": "postgresql://h/db"}, ["--pool-size", "0"], 2, "'--pool-size'"),
    ],
)
def test_config_fails_cleanly_naming_the_variable(env: dict[str, str], args: list[str], code: int, named: str):
    result = cmo_server("config", *args, **env)
    assert result.returncode == code
    assert result.stdout == ""
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert "p@ss" not in result.stderr
    assert PASSWORD not in result.stderr


def test_a_misspelt_variable_is_warned_of_at_start(tmp_path: Path):
    database = tmp_path / "cmo.db"
    result = cmo_server("migrate", "--db", str(database), CMO_POOL_SIZ="4", CMO_TEST_ANYTHING="x", CMO_ADDRESS="h:1")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "unknown setting" in line]
    assert len(warnings) == 1, result.stderr
    assert "unknown setting CMO_POOL_SIZ (did you mean CMO_POOL_SIZE?)" in warnings[0]
    assert "WARNING" in warnings[0]
    assert database.is_file()
