"""What the client raises, and why a connection could not be opened, in words to act on."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import websockets

from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode

NOT_CONNECTED = (
    "the client is not connected: use `async with RpcClient(url) as rpc:` "
    "or `await rpc.connect()` first"
)


class ConnectionLost(ConnectionError):
    """The connection dropped before the call was answered (it may or may not have run)."""


class SessionLost(ConnectionLost, JsonRpcError):
    """A call lost with its session: the server refused to resume it (``reason`` "unknown or
    expired", "overflowed"), or the resumed session did not have the call ("not received": its
    socket went as it was sent). A ``ConnectionLost``, and the error -32015 of client.js."""

    def __init__(self, reason: str, what: str = "") -> None:
        message = f"{what or f'the session was lost ({reason})'}: the call may or may not have run"
        JsonRpcError.__init__(
            self, None, JsonRpcErrorCode.SESSION_NOT_FOUND, {"reason": reason}, message=message
        )
        self.args = (message,)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.message)


class ConnectionFailed(ConnectionError):
    """The first connection could not be opened: the message says why (refused, HTTP status)."""


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(
            f"{url!r} is not a WebSocket URL: it starts with ws:// or wss:// "
            "(http:// becomes ws://, https:// becomes wss://) and names a host"
        )


def check_hooks(**hooks: object) -> None:
    for name, hook in hooks.items():
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable, not {hook!r}")


# Why a WebSocket handshake is refused, by HTTP status, in a Channels deployment.
_STATUS_HINTS = {
    403: "the server refused the connection (an origin check such as "
    "AllowedHostsOriginValidator, missing authentication, or the consumer closed it in connect)",
    404: "there is no WebSocket endpoint at this path",
    500: "is the path right? Channels' URLRouter fails this way when no route matches it",
}


def explain(exc: BaseException) -> str:
    """What went wrong opening a connection, in words a newcomer can act on."""
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        hint = _STATUS_HINTS.get(status, "the server refused the WebSocket handshake")
        return f"HTTP {status}: {hint}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the server running, on this host and port?"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no answer to the WebSocket handshake within open_timeout"
    return str(exc) or type(exc).__name__
