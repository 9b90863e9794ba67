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

Process-local channels (reply channels of front-ends) keep the stock receive path: only one
process reads them, and its backup queue protects replies when a consumer's receive is cancelled.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Final

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from channels_redis.utils import decode_hosts
from redis.exceptions import NoScriptError

__all__ = ["RedisChannelLayer"]

# KEYS[1] channel key; ARGV: message, now, expired-before, capacity, expiry.
_SEND_SCRIPT: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_SEND_SHA: Final = hashlib.sha1(_SEND_SCRIPT.encode()).hexdigest()
#: How much longer than a blocking pop a read may take before the connection counts as dead.
READ_TIMEOUT_MARGIN: Final = 5.0


class RedisChannelLayer(StockRedisChannelLayer):  # type: ignore[misc]
    """Drop-in for ``channels_redis.core.RedisChannelLayer`` with work-queue channels."""

    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        super().__init__(hosts=hosts, **kwargs)
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
        return {**host, "socket_timeout": timeout}

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        target = channel
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            target = self.non_local_name(channel)
        connection = self.connection(self.consistent_hash(target))
        now = time.time()
        args = (
            self.serialize(message),
            now,
            int(now) - int(self.expiry),
            self.get_capacity(channel),
            int(self.expiry),
        )
        key = self.prefix + target
        try:
            added = await connection.evalsha(_SEND_SHA, 1, key, *args)
        except NoScriptError:
            added = await connection.eval(_SEND_SCRIPT, 1, key, *args)
        if not added:
            raise ChannelFull()

    async def receive_single(self, channel: str) -> tuple[str, dict[str, Any]]:
        if "!" in channel:
            result: tuple[str, dict[str, Any]] = await super().receive_single(channel)
            return result
        while True:
            message = await self._pop(channel, self.brpop_timeout)
            if message is not None:
                return channel, message

    async def receive_within(self, channel: str, timeout: float) -> dict[str, Any] | None:
        """The next message of a normal channel, or None if none came within ``timeout``."""
        if "!" in channel:
            raise ValueError("receive_within() serves normal channels, not process-local ones")
        assert self.require_valid_channel_name(channel, receive=True), "Channel name invalid"
        return await self._pop(channel, timeout)

    async def _pop(self, channel: str, timeout: float) -> dict[str, Any] | None:
        connection = self.connection(self.consistent_hash(channel))
        result = await connection.bzpopmin(self.prefix + channel, timeout=timeout)
        if result is None:
            return None
        _, member, score = result
        if float(score) < time.time() - self.expiry:
            return None  # expired while queued: dropped, as stock send would have done
        message: dict[str, Any] = self.deserialize(member)
        return message
