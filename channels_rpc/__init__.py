"""JSON-RPC 2.0 over Django Channels WebSockets, with methods run by worker processes.

Layers, each importing only those below it (checked by import-linter, see pyproject.toml):

    consumer | worker, rpcworker, embedded    Channels/Django adapters; consumer and worker never
                                             import each other
    dispatch, signals, middleware, ...        helpers the adapters share; the 1.0.1 module names
    config, execution, runtime, layers        settings; running one call; the worker loop; Redis
    registry, envelope, pending, context      methods; channel-layer messages; pending calls
    protocol                                  the JSON-RPC wire format
    exceptions                                error codes and JsonRpcError

The front-end (``AsyncJsonRpcWebsocketConsumer``) validates and enqueues; workers
(``manage.py rpcworker``) run methods and answer through the front-end's reply channel.
"""

from channels_rpc.consumer import AsyncJsonRpcWebsocketConsumer
from channels_rpc.context import RpcContext
from channels_rpc.decorators import permission_required
from channels_rpc.exceptions import (
    JsonRpcError,
    JsonRpcErrorCode,
    RequestTooLargeError,
    ResponseTooLargeError,
)
from channels_rpc.limits import check_size_limits
from channels_rpc.middleware import LoggingMiddleware, RpcMiddleware
from channels_rpc.push import notify_group, notify_group_sync
from channels_rpc.worker import RpcWorkerConsumer

__version__ = "2.0.0.dev0"

__all__ = [
    "AsyncJsonRpcWebsocketConsumer",
    "JsonRpcError",
    "JsonRpcErrorCode",
    "LoggingMiddleware",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "RpcContext",
    "RpcMiddleware",
    "RpcWorkerConsumer",
    "check_size_limits",
    "notify_group",
    "notify_group_sync",
    "permission_required",
]
