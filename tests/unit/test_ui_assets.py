"""The web UI's files ship inside the server package, load nothing from elsewhere, and never hand
data to the HTML parser (everything shown is put in as text)."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

STATIC = files("cmo_server.http").joinpath("static")
ASSETS = ("index.html", "app.js", "app.css")


def read(name: str) -> str:
    return STATIC.joinpath(name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ASSETS)
def test_each_asset_is_in_the_package_and_fetches_nothing_from_another_origin(name: str):
    text = read(name)
    assert text.strip()
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), "an absolute URL: a CDN or a tracker"
    assert "@import" not in text


def test_the_page_loads_only_its_own_script_and_style():
    page = read("index.html")
    assert re.findall(r'<script[^>]*src="([^"]+)"', page) == ["/static/app.js"]
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)"', page) == ["/static/app.css"]
    # The Content-Security-Policy allows no inline code.
    assert "<script>" not in page
    assert "style=" not in page


def test_the_script_never_parses_data_as_html():
    script = read("app.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
