"""`cmo-server` as a real process: `config` prints JSON without the secrets, or one line naming the
variable; a misspelt variable is warned of at start; a port in use is one line; JSON log lines."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
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


@pytest.fixture
def taken() -> Iterator[str]:
    """A HOST:PORT something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield f"127.0.0.1:{other.getsockname()[1]}"


LOG_LINE = re.compile(r"^(\{\"ts\"|\d{4}-\d\d-\d\d )")


def _log_lines_then_error(stderr: str) -> str:
    """The one line that is not a log line (the error), checking that it is the last."""
    *logged, error = stderr.splitlines()
    assert all(LOG_LINE.match(line) for line in logged), stderr
    return error


@pytest.mark.parametrize("flag", ["--listen", "--metrics-listen"])
def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path, taken: str, flag: str):
    free = "127.0.0.1:0"
    listen, metrics = (taken, "") if flag == "--listen" else (free, taken)
    result = cmo_server("start-dev", "--db", str(tmp_path / "cmo.db"), "--listen", listen, "--metrics-listen", metrics)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = _log_lines_then_error(result.stderr)
    assert error.startswith(f"Error: cannot listen on {taken}: Address already in use")
    assert flag in error


def test_json_log_lines_carry_milliseconds_a_time_zone_and_the_configuration_as_fields(tmp_path: Path, taken: str):
    result = cmo_server("start-dev", "--db", str(tmp_path / "cmo.db"), "--listen", taken, CMO_LOG_FORMAT="json")
    assert result.returncode == 1
    _log_lines_then_error(result.stderr)
    [line] = [json.loads(text) for text in result.stderr.splitlines() if text.startswith("{")]
    assert line["message"] == "configuration"
    assert line["config"]["store"]["sqlite_path"] == str(tmp_path / "cmo.db")
    assert line["config"]["telemetry"]["log_format"] == "json"
    assert line["config"]["ui"]["listen"].endswith(":8233")  # start-dev's UI, as it will serve
    stamp = datetime.fromisoformat(line["ts"])
    assert stamp.utcoffset() is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])


def test_both_commands_say_their_version():
    server = cmo_server("--version")
    assert server.returncode == 0
    assert server.stdout == f"cmo-server {metadata.version('cmo-server')}\n"
    command = [sys.executable, "-m", "cmo.cli", "--version"]
    sdk = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert sdk.stdout == f"cmoctl {metadata.version('cmo-sdk')}\n"
