"""JSON-RPC 2.0 over Django Channels WebSockets, with methods run by worker processes.

Layers, each importing only those below it (checked by import-linter, see pyproject.toml):

    consumer | worker, rpcworker, embedded    Channels/Django adapters; consumer and worker never
                                             import each other
    checks, scope, caller, call_signals       startup checks; the scope's trip; a worker's handle
                                             on its caller; the method signals
    sending, groups, registration, ...        the front-end's pieces (calls out, memberships, the
                                             1.0.1 class methods) and the helpers both sides share
    config, execution, runtime, layers        settings; running one call; the worker loop; Redis
    registry, envelope, pending, context      methods; channel-layer messages; pending calls
    protocol                                  the JSON-RPC wire format
    exceptions, _layer, _aio                  error codes; the channel layer's Protocol; asyncio
                                             plumbing

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
