"""The gRPC surface: servicers, pb <-> domain conversion, and error-to-status mapping.

The field checks and the namespace resolution are exported too: the web UI's HTTP gateway
(`cmo_server.http`) applies the same ones, so a request is refused there as it is here.
"""

from cmo_server.api._handlers import service_handler
from cmo_server.api._namespace import CHARGE, Charge, check_namespace
from cmo_server.api._registry_service import RegistryServicer
from cmo_server.api._run_service import RunServicer
from cmo_server.api._status import status_for
from cmo_server.api._validate import check_id, check_range, check_text
from cmo_server.api._worker_service import WorkerServicer

__all__ = [
    "CHARGE",
    "Charge",
    "RegistryServicer",
    "RunServicer",
    "WorkerServicer",
    "check_id",
    "check_namespace",
    "check_range",
    "check_text",
    "service_handler",
    "status_for",
]
