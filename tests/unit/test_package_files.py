"""What the packages ship beside the code: the license they declare, the SDK's PyPI page."""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
"""Of https://www.apache.org/licenses/LICENSE-2.0.txt, the standard text."""


def test_the_license_file_is_the_full_text_of_the_license_the_packages_declare():
    projects = [tomllib.loads((ROOT / p / "pyproject.toml").read_text())["project"] for p in ("sdk", "server")]
    declared = {project["license"] for project in projects}
    assert declared == {"Apache-2.0"}
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_0_SHA256


def test_the_sdk_page_says_how_to_install_shows_a_short_example_and_links_on():
    page = (ROOT / "sdk" / "README.md").read_text()
    assert "pip install cmo-sdk" in page
    [example] = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    ast.parse(example)
    code = [line for line in example.splitlines() if line.strip() and not line.lstrip().startswith(("#", "import"))]
    assert len(code) <= 12  # short enough to read at a glance
    assert re.search(r"\]\(https://", page)
