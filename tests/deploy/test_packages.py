"""The wheels as `pip install` gets them: each carries the license the packages declare, and the
server's carries what it serves and migrates with (the web UI's files, the SQL migrations)."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, zipfile.ZipFile]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (the README's setup installs it)")
    out = tmp_path_factory.mktemp("wheels")
    for package in ("sdk", "server"):
        built = subprocess.run(
            [uv, "build", "--wheel", str(ROOT / package), "-o", str(out)], capture_output=True, text=True, timeout=300
        )
        assert built.returncode == 0, built.stderr[-2000:]
    found = {path.name.split("-")[0]: zipfile.ZipFile(path) for path in out.glob("*.whl")}
    assert set(found) == {"cmo_sdk", "cmo_server"}
    return found


@pytest.mark.parametrize("name", ["cmo_sdk", "cmo_server"])
def test_each_wheel_carries_the_license(wheels: dict[str, zipfile.ZipFile], name: str):
    wheel = wheels[name]
    (license_file,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_file) == (ROOT / "LICENSE").read_bytes()
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in wheel.read(metadata).decode()


def test_the_server_wheel_carries_the_web_ui_and_the_migrations(wheels: dict[str, zipfile.ZipFile]):
    names = set(wheels["cmo_server"].namelist())
    for asset in ("index.html", "app.js", "app.css"):
        assert f"cmo_server/http/static/{asset}" in names
    for backend in ("sqlite", "postgres"):
        shipped = {n for n in names if n.startswith(f"cmo_server/store/{backend}/migrations/") and n.endswith(".sql")}
        on_disk = {p.name for p in (ROOT / "server/src/cmo_server/store" / backend / "migrations").glob("*.sql")}
        assert {n.rpartition("/")[2] for n in shipped} == on_disk
