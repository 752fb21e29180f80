"""The one fact the A2A request lookup needs, shared by both backends: how a request is recorded."""

from __future__ import annotations

__all__ = ["REQUEST_KIND", "request_activity_name"]

REQUEST_KIND = "a2a.request"
"""The activity kind of a step's request to an agent."""


def request_activity_name(message_id: str) -> str:
    """The activity name a request `message_id` is recorded under."""
    return f"a2a.{message_id}"
