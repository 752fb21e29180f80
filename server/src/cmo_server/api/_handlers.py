"""Build gRPC handlers from a service descriptor, with request decoding the server controls.

grpc's own decoding answers a garbage body with UNKNOWN and the DecodeError text; decoding here
instead turns it into INVALID_ARGUMENT with a plain message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

__all__ = ["service_handler"]


@dataclass(frozen=True, slots=True)
class _Malformed:
    message_name: str


def service_handler(service: ServiceDescriptor, servicer: object) -> grpc.GenericRpcHandler:
    """A handler serving every unary method of `service` with the same-named servicer method."""
    handlers = {m.name: _method_handler(m, getattr(servicer, m.name)) for m in service.methods}
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _method_handler(method: MethodDescriptor, impl: Callable[..., Awaitable[Message]]) -> grpc.RpcMethodHandler:
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)

    def decode(data: bytes) -> Message | _Malformed:
        try:
            return request_class.FromString(data)
        except DecodeError:
            return _Malformed(method.input_type.full_name)

    async def handle(request: Message | _Malformed, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Malformed):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request body is not a valid {request.message_name}"
            )
        return await impl(request, context)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=decode, response_serializer=response_class.SerializeToString
    )
