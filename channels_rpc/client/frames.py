"""The JSON-RPC frames the client writes and reads: plain data, no I/O."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("channels_rpc.client")


def request(method: str, params: Any, rpc_id: Any) -> dict[str, Any]:
    """A request, or a notification when ``rpc_id`` is None."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if rpc_id is not None:
        message["id"] = rpc_id
    return message


def encode(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


def items(frame: str | bytes) -> Iterator[dict[str, Any]]:
    """The JSON-RPC objects of one frame (a batch is several); anything else is logged."""
    try:
        message = json.loads(frame)
    except ValueError:
        logger.warning("ignoring a frame that is not JSON: %.200r", frame)
        return
    for item in message if isinstance(message, list) else [message]:
        if isinstance(item, dict):
            yield item
        else:
            logger.warning("ignoring a JSON value that is not an object: %.200r", item)


def key(rpc_id: Any) -> str:
    """``rpc_id`` as a table key, in which 1 and "1" are different ids, as on the wire."""
    return json.dumps(rpc_id)
