"""What the worker session's calls are, read from the protocol itself (SessionRequest's `call`)."""

from __future__ import annotations

from cmo.api.v1 import worker_service_pb2

__all__ = ["session_calls"]


def session_calls() -> dict[str, str]:
    """Each call field of a SessionRequest (`complete_task`) and the unary RPC it stands for (`CompleteTask`)."""
    calls = {}
    for field in worker_service_pb2.SessionRequest.DESCRIPTOR.oneofs_by_name["call"].fields:
        if field.name != "cancel" and field.message_type is not None:
            calls[field.name] = field.message_type.name.removesuffix("Request")
    return calls
