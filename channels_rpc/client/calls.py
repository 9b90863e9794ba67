"""The call table: the calls awaiting an answer, by id, their progress, and what a drop does."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from channels_rpc.client.frames import key
from channels_rpc.client.notifications import Handler, run_handler
from channels_rpc.exceptions import JsonRpcError


@dataclass
class Call:
    future: asyncio.Future[Any]
    on_progress: Handler | None = None
    sent: bool = False  # a call not sent yet cannot have run: a drop leaves it queued
    # Made while greeting a socket (rpc.resume, on_connect's calls): it lives and dies with that
    # socket, even when a session keeps the others past a drop.
    bound: bool = False


class CallTable:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._own_ids = itertools.count(1)
        self._pending: dict[str, Call] = {}

    def choose_id(self, rpc_id: str | int | None) -> str | int:
        """``rpc_id`` checked, or by default the next number no pending call uses."""
        if rpc_id is None:
            return next(i for i in self._ids if key(i) not in self._pending)
        if isinstance(rpc_id, bool) or not isinstance(rpc_id, (str, int)):
            raise TypeError(f"rpc_id must be a str or an int, not {rpc_id!r}")
        if key(rpc_id) in self._pending:
            raise ValueError(f"rpc_id {rpc_id!r} is already used by a pending call")
        return rpc_id

    def own_id(self) -> str:
        """An id for the client's own calls (rpc.session, rpc.resume), apart from the numbers
        of the user's calls: those stay 1, 2, 3, ..."""
        return next(i for n in self._own_ids if key(i := f"rpc-{n}") not in self._pending)

    def add(self, rpc_id: str | int, on_progress: Handler | None, *, bound: bool = False) -> Call:
        call = Call(asyncio.get_running_loop().create_future(), on_progress, bound=bound)
        self._pending[key(rpc_id)] = call
        return call

    def forget(self, rpc_id: Any, call: Call) -> bool:
        """Drop ``call`` from the pending ones (not another call reusing its id); true if it was."""
        if self._pending.get(key(rpc_id)) is call:
            del self._pending[key(rpc_id)]
            return True
        return False

    def answer(self, item: dict[str, Any]) -> None:
        """Settle the call that the response ``item`` answers; a stray answer is ignored."""
        call = self._pending.pop(key(item.get("id")), None)
        if call is None or call.future.done():
            return
        if isinstance(error := item.get("error"), dict):
            call.future.set_exception(
                JsonRpcError(
                    item.get("id"), error["code"], error.get("data"), message=error["message"]
                )
            )
        else:
            call.future.set_result(item.get("result"))

    def progress(self, params: dict[str, Any]) -> None:
        """Hand an ``rpc.progress`` notification to the ``on_progress`` of the call it names."""
        call = self._pending.get(key(params.get("id")))
        if call is not None and call.on_progress is not None:
            run_handler(call.on_progress, params)

    def fail_sent(self, error: Exception, *, bound_only: bool = False) -> None:
        """Fail the calls sent (only the socket-bound ones if ``bound_only``: a session keeps
        the others); the calls not sent wait to be sent, for a connection or to raise."""
        self._fail(
            [k for k, c in self._pending.items() if c.sent and (c.bound or not bound_only)], error
        )

    def unheard(self, running: list[Any]) -> list[str]:
        """The calls sent on an earlier socket that a resumed session neither runs nor has
        answered so far (``running``: the ids the resume said still run)."""
        still = {key(rpc_id) for rpc_id in running}
        return [k for k, c in self._pending.items() if c.sent and not c.bound and k not in still]

    def fail_keys(self, keys: list[str], error: Exception) -> None:
        self._fail([k for k in keys if k in self._pending], error)

    def _fail(self, keys: list[str], error: Exception) -> None:
        for rpc_key in keys:
            call = self._pending.pop(rpc_key)
            if not call.future.done():
                call.future.set_exception(error)
