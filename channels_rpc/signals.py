"""Django signals about calls and connections (the names of channels-rpc 1.0.1).

``rpc_method_started`` / ``rpc_method_completed`` / ``rpc_method_failed`` are sent by the
process that runs the method (a worker, or the front-end in embedded mode), with
``sender`` = the consumer class:

* started: ``method_name, params, rpc_id``
* completed: ``method_name, result`` (the method's return value), ``rpc_id, duration``
  (seconds running), ``queue_time`` (seconds from enqueue to start of the run)
* failed: ``method_name, error`` (the exception), ``rpc_id, duration, queue_time``

``rpc_client_connected`` (``scope``) and ``rpc_client_disconnected`` (``scope, duration,
close_code``) are sent by the front-end. A receiver that raises is logged and never breaks a
call. Receivers run on the event loop: keep them quick and free of blocking I/O.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

from channels_rpc.logsafe import protect

__all__ = [
    "rpc_client_connected",
    "rpc_client_disconnected",
    "rpc_method_completed",
    "rpc_method_failed",
    "rpc_method_started",
    "send",
]

logger = protect(logging.getLogger("channels_rpc"))

rpc_method_started = Signal()
rpc_method_completed = Signal()
rpc_method_failed = Signal()
rpc_client_connected = Signal()
rpc_client_disconnected = Signal()


def send(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` if anyone listens; log receivers that raise instead of propagating."""
    if not signal.has_listeners(sender):
        return
    for receiver, response in signal.send_robust(sender, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver %r raised", receiver, exc_info=response)
