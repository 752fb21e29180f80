"""The gRPC surface: servicers, pb <-> domain conversion, and error-to-status mapping."""

from cmo_server.api._handlers import service_handler
from cmo_server.api._registry_service import RegistryServicer
from cmo_server.api._run_service import RunServicer
from cmo_server.api._worker_service import WorkerServicer

__all__ = ["RegistryServicer", "RunServicer", "WorkerServicer", "service_handler"]
