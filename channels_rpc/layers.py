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
* the layer keeps Redis' clock (``clock()``: this host's time plus an offset measured from Redis
  ``TIME`` on every new connection and every watchdog check), so that deadlines and queue times
  crossing hosts mean the same everywhere, whatever each host's clock says
  (:mod:`channels_rpc._redis.clock`);
* a watchdog (:mod:`channels_rpc._redis.watchdog`) notices within seconds that Redis lost its
  data without a restart (``FLUSHDB``, evicted group keys) and has memberships joined again;
* group memberships made through ``join_group`` are recorded with their channel, capped, and
  undone by ``close_channel``, even when the join arrives after the close
  (:mod:`channels_rpc._redis.memberships`);
* a host may name Redis Sentinels (``{"sentinels": [...], "master_name": ...}``): a failover
  has memberships joined again (:mod:`~channels_rpc._redis.sentinel`, docs/guides/failover.md), and
  ``wait_replicas: N`` makes a worker run what it popped once N replicas have the pop;
* connections get a read timeout longer than the blocking pop. redis-py 8 defaults it to 5 s,
  the same as the pop, so stock idle receivers die every 5 s (channels_redis#422); with no
  timeout at all a dead server would hang them forever (:mod:`channels_rpc._redis.options`);
* a channel is bounded in bytes as well as in messages (``byte_capacity``, default 64 MiB, and
  ``channel_byte_capacity``, patterns as ``channel_capacity``), and Redis' ``maxmemory`` holds
  (Redis >= 7): refusals raise :class:`LayerFull`, a ``ChannelFull`` whose ``reason`` says why;
* the scripts take every time from Redis (``TIME``): a host whose clock is off can neither
  expire the messages others queued nor have its own expire early; messages dropped as expired
  are logged (how many, which channel);
* ``withdraw`` finds a message by its score, O(log N), and a send whose caller gave up (the
  ``timeout`` of ``enqueue``) is never received (:mod:`channels_rpc._redis.sender`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from channels_redis.utils import decode_hosts

from channels_rpc._redis.clock import RedisClock
from channels_rpc._redis.inbox import Inbox
from channels_rpc._redis.memberships import JoinResult, Memberships
from channels_rpc._redis.options import ByteCapacities, ReplicaAcks, with_timeouts
from channels_rpc._redis.pop import Popper
from channels_rpc._redis.scripts import WITHDRAW, byte_counter
from channels_rpc._redis.sender import DEFAULT_BYTE_CAPACITY, Handle, LayerFull, Sender
from channels_rpc._redis.sentinel import Servers, checked_host
from channels_rpc._redis.sessions import Sessions
from channels_rpc._redis.watchdog import WATCH_INTERVAL, Watchdog, endpoint_of

__all__ = ["Handle", "LayerFull", "RedisChannelLayer"]

logger = logging.getLogger("channels_rpc.layers")


class RedisChannelLayer(StockRedisChannelLayer):  # type: ignore[misc]
    """Drop-in for ``channels_redis.core.RedisChannelLayer`` with work-queue channels."""

    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        watch_interval = float(kwargs.pop("watch_interval", WATCH_INTERVAL))  # not channels-redis'
        byte_capacity = int(kwargs.pop("byte_capacity", DEFAULT_BYTE_CAPACITY))
        channel_byte_capacity = kwargs.pop("channel_byte_capacity", None) or {}
        acks = ReplicaAcks(
            int(kwargs.pop("wait_replicas", 0)), float(kwargs.pop("wait_replicas_timeout", 0.5))
        )
        super().__init__(hosts=hosts, **kwargs)
        self.hosts = [
            {**with_timeouts(host, self.brpop_timeout), "redis_connect_func": self._on_connect}
            for host in map(checked_host, decode_hosts(hosts))
        ]
        self.byte_capacities = ByteCapacities(
            byte_capacity, self.compile_capacities(channel_byte_capacity)
        )
        self.popper = Popper(int(self.expiry), acks)
        self.redis_clock = RedisClock()
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._epochs: dict[str, Any] = {}
        self._servers = Servers()  # of Sentinel hosts: a change of server is a failover
        self._epoch_key = self.prefix + "rpc.epoch"
        self._senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sender] = (
            weakref.WeakKeyDictionary()
        )
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Inbox]] = (
            weakref.WeakKeyDictionary()
        )
        self._watchdog = Watchdog(self, watch_interval)
        self._memberships = Memberships(self)
        self.sessions = Sessions(self)  # issue 13: channels_rpc._redis.sessions

    def clock(self) -> float:
        """Seconds since the epoch on Redis' clock: the one clock every process agrees on.

        Deadlines and queue times cross hosts in this time, so a host whose clock is off
        neither expires calls early nor runs expired ones.
        """
        return self.redis_clock.now()

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time this process finds that Redis restarted (or lost data,
        or failed over to a replica: see ``sentinel.Servers``).

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

    async def _on_connect(self, connection: Any) -> None:
        """Every new connection: tell whether Redis lost its data (restarted) since the last.

        redis-py reconnects and retries commands on its own, so a restart may never surface as
        an error. A marker key, set once if absent, changes value only when Redis forgot it,
        which is exactly when group memberships need joining again. (Losses without a restart
        are the watchdog's.) Also measures the clock offset: a new connection may be to a new
        server, after a failover.
        """
        await connection.on_connect()
        await connection.send_command("SET", self._epoch_key, uuid.uuid4().hex, "NX")
        await connection.read_response()
        await connection.send_command("GET", self._epoch_key)
        epoch = await connection.read_response()
        before = time.time()
        await connection.send_command("TIME")
        server_time = await connection.read_response()
        self.redis_clock.adjust(before, time.time(), server_time)
        endpoint = endpoint_of(connection)
        previous = self._epochs.get(endpoint)
        self._epochs[endpoint] = epoch
        failed_over = self._servers.failed_over(endpoint, connection)  # (notes the server)
        if previous is not None and previous != epoch:
            logger.warning("Redis at %s lost its data (restarted): joining groups again", endpoint)
            self.notify_reconnected()
        elif failed_over:
            self.notify_reconnected()

    # ---------------------------------------------------------------------------------------
    # Sending

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self.enqueue(channel, message)

    async def enqueue(
        self,
        channel: str,
        message: dict[str, Any],
        *,
        timeout: float | None = None,
        routed: bool = True,
    ) -> Handle | None:
        """``send``, returning a handle that :meth:`withdraw` can take the message back with.

        (None with ``random_prefix_length=0``: members then carry nothing to tell them apart.)
        Raises ``LayerFull`` (a ``ChannelFull`` whose ``reason`` says which limit: messages,
        bytes, Redis' ``maxmemory``). With a ``timeout``, raises ``TimeoutError`` once it has
        passed, and the message is then never sent, or withdrawn if Redis took it anyway (see
        :mod:`channels_rpc._redis.sender`): a caller that gave up may answer "not sent".
        ``routed=False`` sends to the channel's own front-end whatever its session's route
        says (``rpc.handover`` asks the front-end a session was taken from).
        """
        if not isinstance(message, dict):
            raise TypeError("message is not a dict")
        self.require_valid_channel_name(channel)  # raises TypeError
        if "__asgi_channel__" in message:
            raise ValueError("__asgi_channel__ is the layer's own key: not one for a message")
        target = channel
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            target = self.non_local_name(channel)
        handle = await self._sender().send(
            self.consistent_hash(target),
            self.prefix + target,
            self.serialize(message),
            capacity=self.get_capacity(channel),
            byte_capacity=self.get_byte_capacity(channel),
            timeout=timeout,
            routes=(channel,) if target != channel and routed else (),  # their sessions' routes
        )
        return handle if handle.prefix else None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``, one copy per Redis key.

        As channels-redis does, a process's members share its one key and the copy names them
        all; a full channel misses the message. Unlike channels-redis, the copies go through
        the send script: scored and expired on Redis' clock (a pusher whose clock is ahead
        would otherwise expire the answers waiting in every member's key), counted in the
        byte counters, refused whole when Redis is over ``maxmemory``.
        """
        self.require_valid_group_name(group)  # raises TypeError
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        await connection.zremrangebyscore(key, min=0, max=int(self.clock()) - self.group_expiry)
        members = [name.decode("utf8") for name in await connection.zrange(key, 0, -1)]
        by_key: dict[str, list[str]] = {}
        for channel in members:
            by_key.setdefault(self.non_local_name(channel), []).append(channel)
        sender = self._sender()
        sends = [
            sender.send(
                self.consistent_hash(target),
                self.prefix + target,
                self.serialize(
                    {**message, "__asgi_channel__": channels} if "!" in target else message
                ),
                capacity=self.get_capacity(channels[0]),
                byte_capacity=self.get_byte_capacity(channels[0]),
                routes=channels if "!" in target else (),
            )
            for target, channels in by_key.items()
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        refused = [r for r in results if isinstance(r, BaseException)]
        if refused:
            logger.info(
                "%d of %d channels in group %s missed a message: %r",
                len(refused),
                len(members),
                group,
                refused[0],
            )

    def _sender(self) -> Sender:
        loop = asyncio.get_running_loop()
        sender = self._senders.get(loop)
        if sender is None:
            sender = self._senders[loop] = Sender(self)
        return sender

    def get_byte_capacity(self, channel: str) -> int:
        """Bytes ``channel`` may hold: the first ``channel_byte_capacity`` pattern it matches."""
        return self.byte_capacities.of(channel)

    async def withdraw(self, channel: str, handles: Sequence[Handle]) -> int:
        """Remove messages of a normal channel that no receiver has taken yet; how many.

        O(log N) per message in a queue of N: each handle holds its message's score.
        """
        if "!" in channel or not handles:
            return 0
        key = self.prefix + channel
        args: list[Any] = [""]  # no time to wait for: these sends are known to be done
        for handle in handles:
            args += [handle.prefix, handle.score_us, handle.score_us]
        connection = self.connection(self.consistent_hash(channel))
        removed: int = await WITHDRAW(connection, [key, byte_counter(key)], args)
        return removed

    # ---------------------------------------------------------------------------------------
    # Receiving

    async def receive(self, channel: str) -> dict[str, Any]:
        self._watchdog.start()  # a process that receives relies on Redis' state: watch it
        if "!" not in channel:
            return (await self.receive_single(channel))[1]
        self.require_valid_channel_name(channel)  # raises TypeError
        if not self.non_local_name(channel).endswith(self.client_prefix + "!"):
            raise ValueError("Wrong client prefix")
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
        # (acked: with ``wait_replicas``, a replica has the pop before the request can run.)
        popped = await self.popper.take(connection, keys, limit, timeout, acked=True)
        # Scores are Redis' time (the send script's), so Redis' clock tells their age.
        cutoff = self.clock() - self.expiry
        messages = []
        for key, pairs in popped:
            fresh = [self.deserialize(member) for member, score in pairs if score >= cutoff]
            if len(fresh) < len(pairs):
                self._report_expired(key, len(pairs) - len(fresh))
            messages += fresh
        return messages

    def _report_expired(self, key: str, count: int) -> None:
        """Expired while queued: dropped, as a stock send would have, but never silently."""
        logger.warning(
            "dropped %d messages from %s: queued more than %s s ago (no receiver took them)",
            count,
            key.removeprefix(self.prefix),
            self.expiry,
        )

    def _queue_keys(self, channels: Sequence[str]) -> list[str]:
        for name in channels:
            if "!" in name:
                raise ValueError("queues are normal channels, not process-local ones")
            self.require_valid_channel_name(name, receive=True)  # raises TypeError
        if len({self.consistent_hash(name) for name in channels}) != 1:
            raise ValueError(f"{list(channels)} live on different Redis hosts; serve them apart")
        return [self.prefix + name for name in channels]

    async def close_pools(self) -> None:
        await self._watchdog.stop()
        for inboxes in list(self._inboxes.values()):
            for inbox in inboxes.values():
                await inbox.close()
        self._inboxes.clear()
        await super().close_pools()

    # ---------------------------------------------------------------------------------------
    # Groups

    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self.track_group(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        self._watchdog.tracked.discard(group, channel)

    async def join_group(self, group: str, channel: str, *, limit: int) -> JoinResult:
        """Add ``channel`` to ``group``, recorded with the channel, unless closed or in ``limit``.

        See :func:`channels_rpc.groups.join`. Safe from any process, before or after the
        channel's :meth:`close_channel`: a join that lands after the close is undone.
        """
        self.require_valid_group_name(group)  # these raise TypeError
        self.require_valid_channel_name(channel)
        result = await self._memberships.join(group, channel, limit)
        if result == "joined":
            self.track_group(group, channel)
        return result

    async def leave_group(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)  # raises TypeError
        self._watchdog.tracked.discard(group, channel)
        await self._memberships.leave(group, channel)

    async def close_channel(self, channel: str, *, ttl: float) -> list[str]:
        """Leave every group joined through :meth:`join_group`; refuse joins for ``ttl`` s more."""
        self._watchdog.tracked.discard_channel(channel)
        return await self._memberships.close(channel, ttl)

    def track_group(self, group: str, channel: str) -> None:
        """Count on ``channel`` being in ``group`` (no Redis write): the watchdog checks the group.

        Only this process's own channels are tracked. A front-end calls this when it hears that
        a worker joined one of its connections to a group, and :meth:`untrack_group` when it
        hears of a leave.
        """
        if "!" in channel and self.non_local_name(channel).endswith(self.client_prefix + "!"):
            self._watchdog.tracked.add(group, channel)
            self._watchdog.start()

    def untrack_group(self, group: str, channel: str) -> None:
        """No longer count on ``channel`` being in ``group`` (no Redis write)."""
        self._watchdog.tracked.discard(group, channel)
