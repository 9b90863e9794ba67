"""A channels-redis layer whose normal channels are work queues: each message reaches one receiver.

Stock ``channels_redis.core.RedisChannelLayer`` guards every receive with a per-channel
``$inflight`` backup queue. When several processes receive on one channel (several workers on
``rpc.default``), each one's cleanup pushes the others' in-flight messages back, and some
requests run twice (channels_redis#163, measured at 3% of messages). This layer changes three
things and keeps everything else (groups, process-local channels, capacities, expiry):

* a normal channel is popped with one atomic ``BZPOPMIN``, so exactly one receiver gets each
  message, and ``receive_within`` lets a worker wait a bounded time instead of being cancelled
  mid-pop (a pop cancelled after Redis performed it would lose the message);
* ``send`` is one Lua script (expire, capacity check, add), one round trip instead of four;
* connections get a read timeout longer than the blocking pop. redis-py 8 defaults it to 5 s,
  the same as the pop, so stock idle receivers die every 5 s (channels_redis#422); with no
  timeout at all a dead server would hang them forever.

Process-local channels (the reply channels of front-ends) share one Redis key per process. Stock
channels-redis pops it from whichever consumer happens to be receiving and cancels that pop when
the consumer's connection closes, guarded by a backup queue (four commands per message). Here one
long-lived reader per process pops it and sorts messages into per-channel buffers: one command
per message, and a closing connection cancels only its wait on a buffer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any, Final

from channels.exceptions import ChannelFull
from channels_redis.core import BoundedQueue
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from channels_redis.utils import decode_hosts
from redis.exceptions import NoScriptError

__all__ = ["RedisChannelLayer"]

logger = logging.getLogger("channels_rpc.layers")


class _Script:
    """A Lua script run by its SHA, loaded once per connection."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._loaded: weakref.WeakSet[Any] = weakref.WeakSet()

    async def __call__(self, connection: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if connection not in self._loaded:
            # Loaded up front rather than on a NOSCRIPT error: fakeredis' TCP server drops the
            # connection after an error reply (RESP3), and one round trip per pool is cheap.
            await connection.script_load(self.source)
            self._loaded.add(connection)
        try:
            return await connection.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted and forgot it
            return await connection.eval(self.source, len(keys), *keys, *args)


# KEYS[1] channel key; ARGV: message, now, expired-before, capacity, expiry. Scores only ever
# grow, so messages to one key keep their order even when two sends share a clock tick (a
# worker's progress notifications must reach the client before the call's result).
_SEND = _Script("""
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return 0
end
local score = tonumber(ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) >= score then
    score = tonumber(last[2]) + 0.000001
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
""")

# KEYS[1] channel key; ARGV: the random prefixes of the messages to remove. Returns how many
# were still queued (and now never will be received). Linear in the queue, which holds at most
# its capacity: fine for cancellations.
_WITHDRAW = _Script("""
local wanted = {}
for i = 1, #ARGV do wanted[ARGV[i]] = true end
local width = #ARGV[1]
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if wanted[string.sub(member, 1, width)] then
        removed = removed + redis.call('ZREM', KEYS[1], member)
    end
end
return removed
""")

#: How much longer than a blocking pop a read may take before the connection counts as dead.
READ_TIMEOUT_MARGIN: Final = 5.0


class RedisChannelLayer(StockRedisChannelLayer):  # type: ignore[misc]
    """Drop-in for ``channels_redis.core.RedisChannelLayer`` with work-queue channels."""

    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        super().__init__(hosts=hosts, **kwargs)
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Inbox]] = (
            weakref.WeakKeyDictionary()
        )
        hosts_with_timeout = [self._with_read_timeout(host) for host in decode_hosts(hosts)]
        self.hosts = hosts_with_timeout

    def _with_read_timeout(self, host: dict[str, Any]) -> dict[str, Any]:
        minimum = self.brpop_timeout + READ_TIMEOUT_MARGIN
        timeout = host.get("socket_timeout", minimum)
        if timeout is not None and timeout < minimum:
            raise ValueError(
                f"socket_timeout={timeout} would cut the layer's {self.brpop_timeout} s blocking "
                f"reads; use at least {minimum} (or leave it unset)."
            )
        # redis-py waits up to 5 s (20 s before redis-py 8) for a connection to a host that does
        # not answer; a front-end would hold calls that long. Two seconds tell a dead host.
        return {
            **host,
            "socket_timeout": timeout,
            "socket_connect_timeout": host.get("socket_connect_timeout", 2.0),
        }

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
        now = time.time()
        args = (
            member,
            now,
            int(now) - int(self.expiry),
            self.get_capacity(channel),
            int(self.expiry),
        )
        connection = self.connection(self.consistent_hash(target))
        if not await _SEND(connection, [self.prefix + target], args):
            raise ChannelFull()
        # channels-redis starts every member with random bytes (so equal messages stay distinct
        # in the sorted set); they identify this message among the queued ones.
        width = self._serializer.random_prefix_length
        return member[:width] if width else None

    async def withdraw(self, channel: str, handles: Sequence[bytes]) -> int:
        """Remove messages of a normal channel that no receiver has taken yet; how many."""
        if "!" in channel or not handles:
            return 0
        connection = self.connection(self.consistent_hash(channel))
        removed: int = await _WITHDRAW(connection, [self.prefix + channel], list(handles))
        return removed

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
            inboxes[key] = _Inbox(self, key)
        return await inboxes[key].receive(channel)

    async def close_pools(self) -> None:
        for inboxes in list(self._inboxes.values()):
            for inbox in inboxes.values():
                await inbox.close()
        self._inboxes.clear()
        await super().close_pools()

    async def receive_single(self, channel: str) -> tuple[str, dict[str, Any]]:
        if "!" in channel:
            raise ValueError("process-local channels are read through receive()")
        while True:
            message = await self._pop([channel], self.brpop_timeout)
            if message is not None:
                return channel, message

    async def receive_within(
        self, channels: str | Sequence[str], timeout: float
    ) -> dict[str, Any] | None:
        """The next message of any of these normal channels, or None after ``timeout`` seconds.

        One ``BZPOPMIN`` over all the channels' keys: the first non-empty one, in the order
        given, yields its oldest message. The channels must live on one Redis host.
        """
        names = [channels] if isinstance(channels, str) else list(channels)
        for name in names:
            if "!" in name:
                raise ValueError("receive_within() serves normal channels, not process-local ones")
            assert self.require_valid_channel_name(name, receive=True), "Channel name invalid"
        shards = {self.consistent_hash(name) for name in names}
        if len(shards) != 1:
            raise ValueError(f"{names} live on different Redis hosts; serve them separately")
        return await self._pop(names, timeout)

    async def _pop(self, channels: list[str], timeout: float) -> dict[str, Any] | None:
        connection = self.connection(self.consistent_hash(channels[0]))
        result = await connection.bzpopmin([self.prefix + c for c in channels], timeout=timeout)
        if result is None:
            return None
        _, member, score = result
        if float(score) < time.time() - self.expiry:
            return None  # expired while queued: dropped, as stock send would have done
        message: dict[str, Any] = self.deserialize(member)
        return message


class _Inbox:
    """Reads this process's one Redis key of process-local channels, for one event loop.

    One task pops the key for as long as the loop runs and sorts messages into per-channel
    buffers; ``receive()`` only waits on a buffer. Cancelling a receive (Channels does it when
    a connection closes) therefore never cancels a pop that Redis may already have performed,
    and a message needs one pop, with no backup queue. Buffers nobody reads for ``expiry``
    seconds are dropped, as their messages would have expired in Redis.
    """

    def __init__(self, layer: RedisChannelLayer, key: str) -> None:
        self.layer = layer
        self.key = key
        self.buffers: dict[str, BoundedQueue] = {}
        self.waiting: dict[str, int] = {}
        self.touched: dict[str, float] = {}
        self.reader: asyncio.Task[None] | None = None

    async def receive(self, channel: str) -> dict[str, Any]:
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self._read(), name="channels_rpc-inbox")
        buffer = self._buffer(channel)
        self.waiting[channel] = self.waiting.get(channel, 0) + 1
        try:
            message: dict[str, Any] = await buffer.get()
            return message
        finally:
            self.waiting[channel] -= 1
            self.touched[channel] = time.monotonic()

    def _buffer(self, channel: str) -> BoundedQueue:
        if channel not in self.buffers:
            self.buffers[channel] = BoundedQueue(self.layer.get_capacity(channel))
            self.touched[channel] = time.monotonic()
        return self.buffers[channel]

    async def _read(self) -> None:
        backoff = 0.1
        while True:
            try:
                connection = self.layer.connection(self.layer.consistent_hash(self.key))
                result = await connection.bzpopmin(self.key, timeout=self.layer.brpop_timeout)
            except Exception as exc:
                logger.warning("reading %s failed (%s); retrying in %.1f s", self.key, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.1
            if result is not None:
                self._deliver(result)
            self._evict_stale()

    def _deliver(self, result: tuple[Any, bytes, float]) -> None:
        _, member, score = result
        if float(score) < time.time() - self.layer.expiry:
            return
        message = self.layer.deserialize(member)
        channels = message.pop("__asgi_channel__")
        for channel in channels if isinstance(channels, list) else [channels]:
            self._buffer(channel).put_nowait(message)
            self.touched[channel] = time.monotonic()

    def _evict_stale(self) -> None:
        cutoff = time.monotonic() - self.layer.expiry
        for channel in [c for c, t in self.touched.items() if t < cutoff]:
            if not self.waiting.get(channel):
                self.buffers.pop(channel, None)
                self.waiting.pop(channel, None)
                del self.touched[channel]

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
