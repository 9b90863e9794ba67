"""A worker's metrics endpoint (``rpcworker --metrics-port``): ``GET /metrics``, nothing else.

A small HTTP/1.0 server on the worker's own event loop (no thread, no framework): a scrape
first reads the depth of the worker's queues from the layer, then answers with
:func:`channels_rpc.metrics.render`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

from channels_rpc.metrics import CONTENT_TYPE, read_queues, render

__all__ = ["serve_metrics"]

logger = logging.getLogger("channels_rpc.worker")

#: Seconds a scraper has to send its request: a client that sends nothing is not kept.
_READ_TIMEOUT: Final = 5.0


async def serve_metrics(layer: Any, queues: Sequence[str], host: str, port: int) -> asyncio.Server:
    """Listen on ``host``:``port`` (0: a free port; see the server's sockets)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await _answer(reader, layer, queues)
            head = (
                f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (OSError, asyncio.TimeoutError, ValueError):
            pass  # a scraper that went away, or sent nothing we read
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def _answer(
    reader: asyncio.StreamReader, layer: Any, queues: Sequence[str]
) -> tuple[str, str, bytes]:
    request = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
    while (line := await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)).strip():
        pass  # headers: none of them matters here
    del line
    method, _, rest = request.decode("latin-1").partition(" ")
    path = rest.split(" ", 1)[0].split("?", 1)[0]
    if method != "GET" or path != "/metrics":
        return "404 Not Found", "text/plain; charset=utf-8", b"GET /metrics\n"
    try:
        await read_queues(layer, queues)
    except Exception as exc:  # the rest of the metrics are still worth serving
        logger.warning("could not read the queues' depth for the metrics: %r", exc)
    return "200 OK", CONTENT_TYPE, render()
