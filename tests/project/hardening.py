"""Probe methods for the worker hardening tests (issue 10: exits, stuck threads, log injection)."""

from __future__ import annotations

import sys
import threading

from channels_rpc import notify_group
from tests.project.consumers import ProbeConsumer

# Never set: a method waiting on it never returns (the process exits around it).
_NEVER = threading.Event()


def _leave(kind: str) -> None:
    if kind == "exit":
        sys.exit()
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise ValueError(f"unknown kind {kind!r}")


@ProbeConsumer.rpc_method()
async def exit_now(kind: str) -> None:
    """``sys.exit()`` (kind "exit") or ``raise KeyboardInterrupt`` ("interrupt") in a method."""
    _leave(kind)


@ProbeConsumer.rpc_method()
def sync_exit_now(kind: str) -> None:
    """The same from a sync method, in a worker thread."""
    _leave(kind)


@ProbeConsumer.rpc_method(timeout=0.5)
def never_returns() -> None:
    """A sync method that outlives its timeout for good: its thread never comes back."""
    _NEVER.wait()


@ProbeConsumer.rpc_method()
async def repeat(char: str, times: int) -> str:
    """A large answer from a small request."""
    return char * times


@ProbeConsumer.rpc_method()
async def shout(group: str, char: str, times: int) -> bool:
    """A large push from a small request (``join`` subscribes to ``group``)."""
    await notify_group(group, "shout", char * times)
    return True
