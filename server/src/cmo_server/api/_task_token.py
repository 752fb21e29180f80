"""Task tokens: what a worker copies from a Task into every call about it.

A token names one attempt (namespace, run, step, attempt) and what it runs (node, graph version),
so a task call needs nothing else to be understood. It is opaque to workers but not secret: every field is
checked against the task row and its lease holder when the call writes, so a forged or edited
token can name only what its sender could name anyway, and is refused unless that sender holds
the lease. Format: "t1." and the unpadded base64url of the canonical JSON array
[tenant, project, run_id, step_index, attempt, node_id, graph_id, graph_version].
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict

from cmo.serialization import canonical_json
from cmo_server.api._namespace import check_namespace, visible
from cmo_server.api._validate import check_id, check_range
from cmo_server.domain import TaskRef
from cmo_server.errors import InvalidArgument

__all__ = ["TaskTokens", "decode_task_token", "encode_task_token"]

PREFIX = "t1."
MAX_TOKEN_LENGTH = 2048
"""Far above what its capped fields encode to; a longer value is refused before it is decoded."""
MAX_INT = 2**31 - 1


def encode_task_token(ref: TaskRef) -> str:
    """The token of one attempt."""
    ns = ref.namespace
    fields = [
        ns.tenant,
        ns.project,
        ref.run_id,
        ref.step_index,
        ref.attempt,
        ref.node_id,
        ref.graph_id,
        ref.graph_version,
    ]
    return PREFIX + base64.urlsafe_b64encode(canonical_json(fields)).rstrip(b"=").decode("ascii")


def decode_task_token(field: str, token: str) -> TaskRef:
    """The attempt a token names; InvalidArgument naming `field` unless this server issued it."""
    if not token:
        raise InvalidArgument(field, "is required: copy it from the Task")
    malformed = InvalidArgument(field, "is not a task token this server issued: copy it from the Task as it is")
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(PREFIX):
        raise malformed
    body = token[len(PREFIX) :]
    try:
        fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        raise malformed from None
    if not (isinstance(fields, list) and len(fields) == 8):
        raise malformed
    tenant, project, run_id, step_index, attempt, node_id, graph_id, graph_version = fields
    if not all(isinstance(v, str) for v in (tenant, project, run_id, node_id, graph_id)) or not all(
        type(v) is int for v in (step_index, attempt, graph_version)
    ):
        raise malformed
    return TaskRef(
        namespace=check_namespace(f"{field}.namespace", tenant, project),
        run_id=check_id(f"{field}.run_id", run_id),
        step_index=check_range(f"{field}.step_index", step_index, 0, MAX_INT),
        attempt=check_range(f"{field}.attempt", attempt, 1, MAX_INT),
        node_id=check_id(f"{field}.node_id", node_id),
        graph_id=check_id(f"{field}.graph_id", graph_id),
        graph_version=check_range(f"{field}.graph_version", graph_version, 1, MAX_INT),
    )


class TaskTokens:
    """Issues task tokens and reads them back, remembering the last `size` it issued.

    A worker sends its task's token with every call about it (records, heartbeats, the
    checkpoint): remembering what a token names saves decoding and checking it again on each
    call, a tenth of the server's CPU per step on SQLite. A token this server did not issue (a
    replica's, or one from before a restart) is decoded as `decode_task_token` does.
    """

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._issued: OrderedDict[str, TaskRef] = OrderedDict()

    def encode(self, ref: TaskRef) -> str:
        """The token of one attempt, remembered."""
        token = encode_task_token(ref)
        self._issued[token] = ref
        if len(self._issued) > self._size:
            self._issued.popitem(last=False)  # the oldest: its attempt is most likely over
        return token

    def decode(self, field: str, token: str) -> TaskRef:
        """What `token` names; InvalidArgument naming `field` unless it is a task token.

        A remembered token's namespace is still checked against the caller's: tokens are not
        secret, and one issued to a caller of another namespace names nothing for this one.
        """
        ref = self._issued.get(token)
        if ref is None:
            return decode_task_token(field, token)
        visible(ref.namespace)
        return ref
