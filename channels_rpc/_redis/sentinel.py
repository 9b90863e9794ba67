"""Redis Sentinel hosts: the layer follows its primary through a failover.

A host of the layer may name Sentinels instead of a server, in channels-redis' form::

    {"sentinels": [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)],
     "master_name": "mymaster"}

plus, optionally, ``sentinel_kwargs`` (how to connect to the Sentinels: ``password``,
``socket_timeout``...) and the usual connection arguments for the primary (``db``,
``password``, ``socket_timeout``...). channels-redis builds a redis-py
``SentinelConnectionPool`` for it, whose every new connection asks a Sentinel where the
primary is now: everything the layer does (scripts, pops, the inbox, sessions, memberships,
the clock, the watchdog) goes through that pool, so it follows a failover with its next
connection. What this module adds:

* checks, when the layer is built, that a Sentinel host is complete (channels-redis would
  take a host with ``sentinels`` and no ``master_name`` for a plain server, and fail at the
  first connection with an unrelated error);
* short timeouts for the Sentinels themselves: redis-py waits 5 s by default for one that does
  not answer, and asks them one after the other, each time a connection opens;
* one name per Sentinel host (:func:`sentinel_endpoint`), whichever server serves it, so that
  the layer's epoch marker (:mod:`channels_rpc._redis.watchdog`) is compared across the
  failover; and the server a connection reached (:func:`served_by`), so that the layer can
  tell a failover happened and have group memberships joined again: Redis replicates
  asynchronously, and the writes of the primary's last moments may not have reached the
  replica that took over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "SENTINEL_TIMEOUT",
    "Servers",
    "checked_host",
    "is_sentinel",
    "sentinel_endpoint",
    "sentinel_host",
    "served_by",
]

logger = logging.getLogger("channels_rpc.layers")

#: Seconds to connect to a Sentinel, and for it to answer, before asking the next one.
SENTINEL_TIMEOUT: Final = 1.0


def checked_host(host: dict[str, Any]) -> dict[str, Any]:
    """A decoded host of the layer, a Sentinel one checked and completed (``sentinel_host``)."""
    return sentinel_host(host) if is_sentinel(host) else host


def is_sentinel(host: dict[str, Any]) -> bool:
    """Whether ``host`` (a decoded host of the layer) names Sentinels rather than a server."""
    return "sentinels" in host or "master_name" in host


def sentinel_host(host: dict[str, Any]) -> dict[str, Any]:
    """``host``, checked, with the Sentinels as (host, port) pairs and their timeouts set.

    Raises ``ValueError`` for a host that cannot work: Sentinels without the name of the
    primary they monitor, or the other way round, or a Sentinel host that also gives an
    ``address`` (channels-redis would use the address and ignore the Sentinels).
    """
    if "address" in host:
        raise ValueError("a Sentinel host takes 'sentinels' and 'master_name', not an 'address'")
    name = host.get("master_name")
    if not isinstance(name, str) or not name:
        raise ValueError("a Sentinel host needs 'master_name': the name the Sentinels monitor")
    sentinels = _pairs(host.get("sentinels"))
    sentinel_kwargs = dict(host.get("sentinel_kwargs") or {})
    sentinel_kwargs.setdefault("socket_connect_timeout", SENTINEL_TIMEOUT)
    sentinel_kwargs.setdefault("socket_timeout", SENTINEL_TIMEOUT)
    return {**host, "sentinels": sentinels, "sentinel_kwargs": sentinel_kwargs}


def _pairs(sentinels: Any) -> list[tuple[str, int]]:
    """The Sentinels as (host, port) pairs: given as pairs (tuples or JSON lists) or "host:port"."""
    if not sentinels or isinstance(sentinels, (str, bytes)):
        raise ValueError("a Sentinel host needs 'sentinels': a list of (host, port) pairs")
    pairs = []
    for entry in sentinels:
        if isinstance(entry, str):
            host, _, port = entry.rpartition(":")
            entry = (host, port)
        if not isinstance(entry, Sequence) or len(entry) != 2:
            raise ValueError(f"a Sentinel is a (host, port) pair or 'host:port', not {entry!r}")
        try:
            pairs.append((str(entry[0]), int(entry[1])))
        except (TypeError, ValueError):
            raise ValueError(f"a Sentinel's port is a number, not {entry[1]!r}") from None
    return pairs


def _get(attributes: Any, name: str) -> Any:
    if isinstance(attributes, dict):
        return attributes.get(name)
    return getattr(attributes, name, None)


def sentinel_endpoint(attributes: Any) -> str | None:
    """``"sentinel:NAME/DB"`` for a connection (or a pool's connection arguments) of a
    Sentinel host, whichever server it reached; None for any other connection."""
    pool = _get(attributes, "connection_pool")  # a Sentinel-managed connection's own pool
    name = getattr(pool, "service_name", None) if pool is not None else None
    if not isinstance(name, str):
        return None
    return f"sentinel:{name}/{_get(attributes, 'db') or 0}"


def served_by(connection: Any) -> str:
    """``host:port`` of the server ``connection`` reached."""
    return f"{_get(connection, 'host')}:{_get(connection, 'port')}"


class Servers:
    """The server that served each Sentinel host last: a new one means a failover."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def failed_over(self, endpoint: str, connection: Any) -> bool:
        """Whether ``connection`` (to ``endpoint``) reached another server than the last one.

        Replication is asynchronous: the memberships written in the primary's last moments may
        not have reached the replica that took over, so the layer has them joined again, as
        after a restart (the epoch marker, replicated long before, does not tell).
        """
        if sentinel_endpoint(connection) is None:
            return False
        server = served_by(connection)
        before, self._last[endpoint] = self._last.get(endpoint), server
        if before is None or before == server:
            return False
        logger.warning(
            "Redis failover: %s is now served by %s (was %s): joining groups again",
            endpoint,
            server,
            before,
        )
        return True
