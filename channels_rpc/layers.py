"""A channels-redis layer whose normal channels are work queues: each message reaches one receiver.

Stock ``channels_redis.core.RedisChannelLayer`` guards every receive with a per-channel
``$inflight`` backup queue. When several processes receive on one channel (several workers on
``rpc.default``), each one's cleanup pushes the others' in-flight messages back, and some
requests run twice (channels_redis#163, measured at 3% of messages). This layer keeps groups,
capacities and expiry, and changes the rest:

* a normal channel is popped atomically, up to N messages at once for a worker with N free
  slots (``BZMPOP``): exactly one receiver gets each message. Workers wait
  with bounded pops (``receive_within``/``receive_many``) instead of being cancelled mid-pop,
  which would lose a message Redis had already handed over;
* a process's process-local channels (the reply channels of a front-end) share one Redis key,
  read by one long-lived task per process that sorts messages into per-channel buffers
  (:mod:`channels_rpc._redis.inbox`): a closing connection cancels only its wait on a buffer,
  and a busy reader drains up to a hundred messages per round trip;
* sends made during one turn of the event loop go to Redis in one script call
  (:mod:`channels_rpc._redis.sender`), and ``enqueue`` returns a handle with which
  ``withdraw`` takes a message back while it is still queued (cancellation);
* connections get a read timeout longer than the blocking pop. redis-py 8 defaults it to 5 s,
  the same as the pop, so stock idle receivers die every 5 s (channels_redis#422); with no
  timeout at all a dead server would hang them forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from channels_redis.utils import decode_hosts

from channels_rpc._redis.inbox import Inbox
from channels_rpc._redis.pop import Popper
from channels_rpc._redis.scripts import WITHDRAW
from channels_rpc._redis.sender import Sender

__all__ = ["RedisChannelLayer"]

logger = logging.getLogger("channels_rpc.layers")

#: How much longer than a blocking pop a read may take before the connection counts as dead.
READ_TIMEOUT_MARGIN: Final = 5.0


class RedisChannelLayer(StockRedisChannelLayer):  # type: ignore[misc]
    """Drop-in for ``channels_redis.core.RedisChannelLayer`` with work-queue channels."""

    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        super().__init__(hosts=hosts, **kwargs)
        self.hosts = [self._with_timeouts(host) for host in decode_hosts(hosts)]
        self.popper = Popper()
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._clock_offset = 0.0  # Redis' clock minus this host's, measured on connect
        self._epochs: dict[str, Any] = {}
        self._epoch_key = self.prefix + "rpc.epoch"
        self._senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sender] = (
            weakref.WeakKeyDictionary()
        )
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Inbox]] = (
            weakref.WeakKeyDictionary()
        )

    def clock(self) -> float:
        """Seconds since the epoch on Redis' clock: the one clock every process agrees on.

        Deadlines and queue times cross hosts in this time, so a host whose clock is off
        neither expires calls early nor runs expired ones.
        """
        return time.time() + self._clock_offset

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time this process finds that Redis restarted.

        A restarted Redis has forgotten every group membership; holders of memberships
        (connections, workers) use this to join again at once rather than at their next renewal.
        """
        self._reconnect_callbacks.append(callback)

    def notify_reconnected(self) -> None:
        for callback in list(self._reconnect_callbacks):
            try:
                callback()
            except Exception:
                logger.exception("a reconnect callback raised")

    def _with_timeouts(self, host: dict[str, Any]) -> dict[str, Any]:
        minimum = self.brpop_timeout + READ_TIMEOUT_MARGIN
        timeout = host.get("socket_timeout", minimum)
        if timeout is not None and timeout < minimum:
            raise ValueError(
                f"socket_timeout={timeout} would cut the layer's {self.brpop_timeout} s blocking "
                f"reads; use at least {minimum} (or leave it unset)."
            )
        # redis-py waits up to 5 s (20 s before redis-py 8) for a connection to a host that does
        # not answer; a front-end would hold calls that long. Two seconds tell a dead host.
        connect_timeout = host.get("socket_connect_timeout", 2.0)
        return {
            **host,
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
            "redis_connect_func": self._on_connect,
        }

    async def _on_connect(self, connection: Any) -> None:
        """Every new connection: tell whether Redis lost its data (restarted) since the last.

        redis-py reconnects and retries commands on its own, so a restart may never surface as
        an error. A marker key, set once if absent, changes value only when Redis forgot it,
        which is exactly when group memberships need joining again.
        """
        await connection.on_connect()
        await connection.send_command("SET", self._epoch_key, uuid.uuid4().hex, "NX")
        await connection.read_response()
        await connection.send_command("GET", self._epoch_key)
        epoch = await connection.read_response()
        endpoint = ":".join(str(getattr(connection, a, "")) for a in ("host", "port", "path"))
        previous = self._epochs.get(endpoint)
        self._epochs[endpoint] = epoch
        if previous is not None and previous != epoch:
            logger.warning("Redis at %s lost its data (restarted): joining groups again", endpoint)
            self.notify_reconnected()

    # ---------------------------------------------------------------------------------------
    # Sending

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self.enqueue(channel, message)

    async def enqueue(self, channel: str, message: dict[str, Any]) -> bytes | None:
        """``send``, returning a handle that :meth:`withdraw` can take the message back with."""
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        target = channel
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            target = self.non_local_name(channel)
        member = self.serialize(message)
        sender = self._senders.get(asyncio.get_running_loop())
        if sender is None:
            sender = self._senders[asyncio.get_running_loop()] = Sender(self)
        index = self.consistent_hash(target)
        await sender.send(index, self.prefix + target, member, self.get_capacity(channel))
        # channels-redis starts every member with random bytes (so equal messages stay distinct
        # in the sorted set); they identify this message among the queued ones.
        width = self._serializer.random_prefix_length
        return member[:width] if width else None

    async def withdraw(self, channel: str, handles: Sequence[bytes]) -> int:
        """Remove messages of a normal channel that no receiver has taken yet; how many."""
        if "!" in channel or not handles:
            return 0
        connection = self.connection(self.consistent_hash(channel))
        removed: int = await WITHDRAW(connection, [self.prefix + channel], list(handles))
        return removed

    # ---------------------------------------------------------------------------------------
    # Receiving

    async def receive(self, channel: str) -> dict[str, Any]:
        if "!" not in channel:
            return (await self.receive_single(channel))[1]
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert self.non_local_name(channel).endswith(self.client_prefix + "!"), (
            "Wrong client prefix"
        )
        inboxes = self._inboxes.setdefault(asyncio.get_running_loop(), {})
        key = self.prefix + self.non_local_name(channel)
        if key not in inboxes:
            inboxes[key] = Inbox(self, key)
        return await inboxes[key].receive(channel)

    async def receive_single(self, channel: str) -> tuple[str, dict[str, Any]]:
        if "!" in channel:
            raise ValueError("process-local channels are read through receive()")
        while True:
            messages = await self.receive_many([channel], 1, self.brpop_timeout)
            if messages:
                return channel, messages[0]

    async def receive_within(
        self, channels: str | Sequence[str], timeout: float
    ) -> dict[str, Any] | None:
        """The next message of any of these normal channels, or None after ``timeout``."""
        names = [channels] if isinstance(channels, str) else list(channels)
        messages = await self.receive_many(names, 1, timeout)
        return messages[0] if messages else None

    async def receive_many(
        self, channels: Sequence[str], limit: int, timeout: float
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` messages from these normal channels, earlier channels first.

        Takes whatever is waiting at once; if nothing is, waits up to ``timeout`` seconds for
        one message. The channels must live on one Redis host.
        """
        keys = self._queue_keys(channels)
        connection = self.connection(self.consistent_hash(channels[0]))
        pairs = await self.popper.pop(connection, keys, limit, timeout)
        cutoff = time.time() - self.expiry
        # Expired while queued: dropped, as a stock send would have dropped them.
        return [self.deserialize(member) for member, score in pairs if score >= cutoff]

    def _queue_keys(self, channels: Sequence[str]) -> list[str]:
        for name in channels:
            if "!" in name:
                raise ValueError("queues are normal channels, not process-local ones")
            assert self.require_valid_channel_name(name, receive=True), "Channel name invalid"
        if len({self.consistent_hash(name) for name in channels}) != 1:
            raise ValueError(f"{list(channels)} live on different Redis hosts; serve them apart")
        return [self.prefix + name for name in channels]

    async def close_pools(self) -> None:
        for inboxes in list(self._inboxes.values()):
            for inbox in inboxes.values():
                await inbox.close()
        self._inboxes.clear()
        await super().close_pools()
