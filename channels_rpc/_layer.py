"""What this package asks of a channel layer, typed: Channels' spec and the work-queue extension.

Channels' layers are untyped, and what a layer can do beyond the spec shows only as methods it
may lack. :class:`ChannelLayer` names the spec's methods this package calls;
:class:`WorkQueueLayer` adds what :class:`channels_rpc.layers.RedisChannelLayer` offers beyond
them. :func:`work_queue` decides once per holder (a connecting consumer, a worker loop being
built) whether a layer has them all; the holder keeps the typed reference and calls them
directly, instead of asking the layer with ``getattr`` at each use.

Pure: no Django, Channels or Redis import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, Protocol, TypeAlias, cast

__all__ = [
    "ChannelLayer",
    "Handle",
    "JoinResult",
    "RedisHosts",
    "WorkQueueLayer",
    "expiry",
    "group_expiry",
    "redis_hosts",
    "work_queue",
]

#: What ``join_group`` did: see :mod:`channels_rpc.groups`.
JoinResult = Literal["joined", "closed", "full"]
#: What ``enqueue`` returns for ``withdraw`` to take the message back with; opaque to callers.
Handle: TypeAlias = Any

#: Channels' own defaults (``BaseChannelLayer``, channels-redis), for layers that do not say.
DEFAULT_EXPIRY: Final = 60
DEFAULT_GROUP_EXPIRY: Final = 86400


class ChannelLayer(Protocol):
    """The channel layer spec, with its groups extension (``channels.layers.BaseChannelLayer``)."""

    async def send(self, channel: str, message: dict[str, Any]) -> None: ...

    async def receive(self, channel: str) -> dict[str, Any]: ...

    async def new_channel(self) -> str: ...

    async def group_add(self, group: str, channel: str) -> None: ...

    async def group_discard(self, group: str, channel: str) -> None: ...

    async def group_send(self, group: str, message: dict[str, Any]) -> None: ...


class WorkQueueLayer(ChannelLayer, Protocol):
    """A layer whose normal channels are work queues, with this package's extensions."""

    def clock(self) -> float: ...

    async def enqueue(
        self, channel: str, message: dict[str, Any], *, timeout: float | None = None
    ) -> Handle | None: ...

    async def withdraw(self, channel: str, handles: Sequence[Handle]) -> int: ...

    async def receive_many(
        self, channels: Sequence[str], limit: int, timeout: float
    ) -> list[dict[str, Any]]: ...

    def on_reconnect(self, callback: Callable[[], None]) -> None: ...

    async def join_group(self, group: str, channel: str, *, limit: int) -> JoinResult: ...

    async def leave_group(self, group: str, channel: str) -> None: ...

    async def close_channel(self, channel: str, *, ttl: float) -> list[str]: ...

    def track_group(self, group: str, channel: str) -> None: ...

    def untrack_group(self, group: str, channel: str) -> None: ...


#: The methods a layer needs to be a :class:`WorkQueueLayer`.
CAPABILITIES: Final = tuple(name for name in vars(WorkQueueLayer) if not name.startswith("_"))


def work_queue(layer: ChannelLayer | None) -> WorkQueueLayer | None:
    """``layer`` as a :class:`WorkQueueLayer` if it has every one of its methods, else None."""
    if layer is not None and all(callable(getattr(layer, n, None)) for n in CAPABILITIES):
        return cast(WorkQueueLayer, layer)
    return None


class RedisHosts(Protocol):
    """A layer on a ring of Redis hosts (channels-redis' layer and ours): one client per host."""

    ring_size: int

    def connection(self, index: int) -> Any: ...


def redis_hosts(layer: ChannelLayer) -> RedisHosts | None:
    """``layer`` as :class:`RedisHosts` if it is on Redis hosts, else None."""
    if isinstance(getattr(layer, "ring_size", None), int) and callable(
        getattr(layer, "connection", None)
    ):
        return cast(RedisHosts, layer)
    return None


def expiry(layer: ChannelLayer) -> float:
    """Seconds a message may wait in one of ``layer``'s channels before it is dropped."""
    return float(getattr(layer, "expiry", DEFAULT_EXPIRY))


def group_expiry(layer: ChannelLayer) -> float:
    """Seconds a group membership lasts unless it is added again."""
    return float(getattr(layer, "group_expiry", DEFAULT_GROUP_EXPIRY))
