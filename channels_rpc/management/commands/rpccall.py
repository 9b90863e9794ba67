"""``manage.py rpccall METHOD [PARAMS]``: call a method and print its result as JSON.

Over the network by default: the package's own client (:mod:`channels_rpc.client`) calls the
front-end at ``--url`` (else ``$CHANNELS_RPC_URL``, else the local default). With ``--inline``
the call runs in this process instead, through a consumer class in embedded mode, on an
in-memory channel layer: no front-end, no worker, no Redis.

Exit status: 0 with the result on stdout; 1 when the server answered with an error (its error
object on stderr, as JSON); 2 when the call could not be made (bad arguments, no connection, no
answer within ``--timeout``), with a one-line message on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test.utils import override_settings
from django.utils.module_loading import import_string

from channels_rpc import discovery, embedded, registry, signals
from channels_rpc.config import get_config
from channels_rpc.exceptions import JsonRpcError
from channels_rpc.management._arguments import json_params

#: Where the front-end is when neither ``--url`` nor this variable says.
URL_VARIABLE = "CHANNELS_RPC_URL"
DEFAULT_URL = "ws://127.0.0.1:8000/ws/rpc/"
#: The server answered the call with an error.
ANSWERED_WITH_ERROR = 1
#: The call could not be made (2, as argparse exits on bad arguments).
CANNOT_CALL = 2
#: The id of the one call this command makes.
CALL_ID = 1


@dataclass(frozen=True)
class Call:
    """The one call (or notification) to make, as the command line gave it."""

    method: str
    params: Any
    notify: bool
    timeout: float
    headers: dict[str, str] = field(default_factory=dict)

    def frame(self) -> str:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": self.method}
        if self.params is not None:
            message["params"] = self.params
        if not self.notify:
            message["id"] = CALL_ID
        return json.dumps(message)


class Command(BaseCommand):  # type: ignore[misc]
    help = "Call a JSON-RPC method (of a running front-end, or --inline) and print its result."
    requires_system_checks: ClassVar[list[str]] = []  # a command-line call must start fast

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("method")
        parser.add_argument("params", nargs="?", help="JSON: an array or an object.")
        parser.add_argument(
            "--url",
            help=f"The front-end's WebSocket URL (default: ${URL_VARIABLE}, else {DEFAULT_URL}).",
        )
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="Seconds to connect, and to be answered."
        )
        parser.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="'NAME: VALUE'",
            help="A handshake header (Authorization, Origin, ...); repeatable.",
        )
        parser.add_argument("--notify", action="store_true", help="Send a notification: no answer.")
        parser.add_argument("--indent", type=int, help="Indent the result's JSON.")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="Run the call in this process through the consumer class (embedded mode).",
        )
        parser.add_argument("--consumer", help="The consumer class for --inline, as a dotted path.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be more than 0 seconds.", returncode=CANNOT_CALL)
        if options["consumer"] and not options["inline"]:
            raise CommandError("--consumer goes with --inline.", returncode=CANNOT_CALL)
        call = Call(
            options["method"],
            json_params(options["params"], CANNOT_CALL),
            options["notify"],
            options["timeout"],
            _headers(options["header"]),
        )
        url = options["url"] or os.environ.get(URL_VARIABLE) or DEFAULT_URL
        try:
            if options["inline"]:
                result = _call_inline(call, urlsplit(url).path or "/", options["consumer"])
            else:
                result = asyncio.run(_call_over_network(call, url))
        except JsonRpcError as exc:
            self.stderr.write(json.dumps(exc.error(), ensure_ascii=False))
            raise SystemExit(ANSWERED_WITH_ERROR) from None
        if not call.notify:
            self.stdout.write(json.dumps(result, indent=options["indent"], ensure_ascii=False))


def _headers(lines: list[str]) -> dict[str, str]:
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise CommandError(
                f"--header {line!r}: write it as 'Name: value'.", returncode=CANNOT_CALL
            )
        headers[name.strip()] = value.strip()
    return headers


# ---------------------------------------------------------------------------------------------
# Over the network, with the package's client


async def _call_over_network(call: Call, url: str) -> Any:
    try:  # the client needs websockets, an extra: only this path does
        from channels_rpc.client import ConnectionFailed, ConnectionLost, RpcClient
    except ImportError as exc:
        raise CommandError(str(exc), returncode=CANNOT_CALL) from None
    try:
        # One call: no reconnection, and no session to keep its answer past a drop.
        client = RpcClient(
            url, headers=call.headers, reconnect=False, sessions=False, open_timeout=call.timeout
        )
        await client.connect()
    except (ValueError, ConnectionFailed) as exc:
        raise CommandError(str(exc), returncode=CANNOT_CALL) from None
    try:
        if call.notify:
            await client.notify(call.method, call.params)
            return None
        return await client.call(call.method, call.params, timeout=call.timeout)
    except asyncio.TimeoutError:
        raise CommandError(_no_answer(url, call), returncode=CANNOT_CALL) from None
    except ConnectionLost as exc:
        raise CommandError(f"{url}: {exc} before the answer", returncode=CANNOT_CALL) from None
    finally:
        await client.close()


def _no_answer(where: str, call: Call) -> str:
    return f"no answer from {where} within {call.timeout:g} s (--timeout)"


# ---------------------------------------------------------------------------------------------
# In this process (--inline)


def _call_inline(call: Call, path: str, dotted: str | None) -> Any:
    """Run ``call`` through the consumer class, its worker embedded in this process.

    On an in-memory layer whatever the settings say: the embedded worker of a Redis layer would
    serve the project's shared queues, taking other clients' calls. The project's ASGI stack
    (authentication, origin checks) is not in the way: the consumer is called directly.
    """
    consumer = _consumer_class(dotted, call)
    alias = get_config().channel_layer
    layers = {**settings.CHANNEL_LAYERS, alias: {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    rpc = {**getattr(settings, "CHANNELS_RPC", {}), "EXECUTION": "inline"}
    with override_settings(CHANNEL_LAYERS=layers, CHANNELS_RPC=rpc):
        return asyncio.run(_run_inline(call, consumer, path))


def _consumer_class(dotted: str | None, call: Call) -> type[Any]:
    """``--consumer``, else the one registered class, else the one that has the method."""
    if dotted is not None:
        try:
            chosen: type[Any] = import_string(dotted)
        except ImportError as exc:
            raise CommandError(f"--consumer {dotted}: {exc}", returncode=CANNOT_CALL) from None
        return chosen
    discovery.import_application()  # classes registered by what the ASGI application imports
    classes = [
        cls
        for cls in map(registry.resolve_consumer, (t.key for t in registry.live_tables()))
        if cls is not None
    ]
    having = [c for c in classes if _has(c, call)]
    if len(classes) == 1 or len(having) == 1:
        return (having or classes)[0]
    names = ", ".join(sorted(registry.consumer_key(c) for c in having or classes))
    if not names:
        raise CommandError(discovery.nothing_registered(), returncode=CANNOT_CALL)
    raise CommandError(
        f"several consumer classes could take {call.method!r}: {names}; choose one with --consumer",
        returncode=CANNOT_CALL,
    )


def _has(consumer: type[Any], call: Call) -> bool:
    table = registry.table_of(consumer)
    return table is not None and table.lookup(call.method, notification=call.notify) is not None


async def _run_inline(call: Call, consumer: type[Any], path: str) -> Any:
    communicator = WebsocketCommunicator(
        consumer.as_asgi(),
        path,
        headers=[(k.lower().encode(), v.encode()) for k, v in call.headers.items()],
        subprotocols=["jsonrpc"],
    )
    try:
        connected, code = await communicator.connect(call.timeout)
        if not connected:
            raise CommandError(
                f"{registry.consumer_key(consumer)} refused the connection (close code {code})",
                returncode=CANNOT_CALL,
            )
        if call.notify:
            with _runs_of(consumer, call.method) as ran:  # before the send: it may run at once
                await communicator.send_to(text_data=call.frame())
                await asyncio.wait_for(ran.wait(), call.timeout)
            return None
        await communicator.send_to(text_data=call.frame())
        return _result(await asyncio.wait_for(_answer(communicator, CALL_ID), call.timeout))
    except asyncio.TimeoutError:
        raise CommandError(_not_done(consumer, call), returncode=CANNOT_CALL) from None
    finally:
        # The last connection to go stops the embedded worker, giving what runs its grace.
        await communicator.disconnect(timeout=get_config().shutdown_grace + 1)
        await embedded.shutdown()


async def _answer(communicator: WebsocketCommunicator, rpc_id: Any) -> dict[str, Any]:
    """The answer to ``rpc_id``, past what comes before it (the call's progress, pushes)."""
    while True:
        frame = json.loads(await communicator.receive_from(timeout=None))
        if isinstance(frame, dict) and "method" not in frame and frame.get("id") == rpc_id:
            return frame


def _result(answer: dict[str, Any]) -> Any:
    if isinstance(error := answer.get("error"), dict):
        raise JsonRpcError(CALL_ID, error["code"], error.get("data"), message=error["message"])
    return answer.get("result")


@contextlib.contextmanager
def _runs_of(consumer: type[Any], method: str) -> Iterator[asyncio.Event]:
    """An event set once the notification ``method`` of ``consumer`` ran, ended or failed.

    Nothing answers a notification, and the embedded worker stops with the connection,
    dropping what is still queued: the command waits for it to run. The signals of the process
    that runs methods tell, and that is this one.
    """
    loop = asyncio.get_running_loop()
    ran = asyncio.Event()

    def receiver(sender: Any, method_name: str, rpc_id: Any, **kwargs: Any) -> None:
        if method_name == method and rpc_id is None:
            loop.call_soon_threadsafe(ran.set)  # a sync method's thread may send it

    ends = (signals.rpc_method_completed, signals.rpc_method_failed)
    for signal in ends:
        signal.connect(receiver, sender=consumer, weak=False)
    try:
        yield ran
    finally:
        for signal in ends:
            signal.disconnect(receiver, sender=consumer)


def _not_done(consumer: type[Any], call: Call) -> str:
    where = registry.consumer_key(consumer)
    if not call.notify:
        return _no_answer(where, call)
    return (
        f"the notification {call.method!r} did not run within {call.timeout:g} s (--timeout) "
        f"on {where}: the log says why if it was dropped (unknown, wrong params)"
    )
