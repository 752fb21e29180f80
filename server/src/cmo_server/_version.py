"""The installed server's version."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("cmo-server")
except metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
