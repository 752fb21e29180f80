"""What retention asks of a store: SQL both backends share."""

from __future__ import annotations

__all__ = ["MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = (
    ("runs", "input"),
    ("runs", "result"),
    ("steps", "state"),
    ("steps", "output"),
    ("activities", "result"),
    ("signals", "payload"),
)
"""Every (table, column) that holds payloads, which may be manifests naming blobs."""
