"""Agents' replies to the runs that asked: the server's side of a graph invoking a specialist."""

from cmo_server.a2a._replies import ReplyConsumer
from cmo_server.a2a._unanswered import UnansweredRequests

__all__ = ["ReplyConsumer", "UnansweredRequests"]
