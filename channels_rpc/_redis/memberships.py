"""Group memberships recorded with their connection, in Redis (the layer's side of ``groups``).

Each channel that joins through here has a record, a set of its groups on the channel's own
Redis host, and closing it leaves a mark there for as long as late joins may arrive. The group
itself lives on the group's host, which may be another one (consistent hashing), so no single
script can cover both, and the steps are ordered so that every interleaving of a join with a
close leaves no membership behind:

* join: add to the group first, then, atomically on the channel's host, refuse if the mark is
  set or the record holds ``limit`` other groups, else record the group; a refused join takes
  its member out of the group again. A close that read the record before the join recorded
  itself is followed by the join finding the mark;
* close: set the mark and take the record, atomically; then remove the channel from each group
  it held. A join recorded before that is in the record; one after finds the mark;
* leave: unrecord first, then leave the group. In the other order a join racing the leave
  could find its group still recorded, and keep a membership the record no longer names;
* move (a session resumed on a new channel, :mod:`channels_rpc._redis.sessions`): set a moved
  mark on the old channel and take its record, atomically; then, in each group, take the old
  channel out and put the new one in, in one script per host, only where the old one still was
  (a leave that got there first stays a leave); then record the moved groups with the new
  channel. A group holds the old channel or the new one, never both, so a push is delivered
  once (one to the old channel is sent on to the new one by its route). Joins and leaves for the
  old channel that come later (a call begun before the resume) find the mark and act on the new
  channel instead: a join undoes its step on the old channel, a leave leaves both. (A move
  first clears the new channel's own moved mark: a session moved back to a channel it had does
  not send joins round in a circle.)

Each of these runs to its end once started, even when its caller is cancelled (a closing
connection cancels the method that is joining): stopped between its steps, a join would leave
a member no record names.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Iterable
from typing import Any, Final, Literal, TypeVar

from channels_rpc._redis.scripts import Script

__all__ = ["JoinResult", "Memberships"]

# The values of channels_rpc.groups.JoinResult (a layer above this one).
JoinResult = Literal["joined", "closed", "full"]
T = TypeVar("T")

#: The mark of a channel whose memberships moved starts with this, followed by the new channel.
MOVED: Final = ">"
#: Moved marks a join or a leave follows at most (a chain of resumes; more means a loop).
MAX_MOVES: Final = 16

# KEYS[1]: the channel's record (the set of its groups), KEYS[2]: its mark (closed, or moved).
# ARGV: the group, the limit, the record's expiry in seconds. Returns 'closed', 'full', 'again'
# (the group was recorded already), 'joined', or the moved mark ('>' and the new channel).
ADMIT: Final = Script("""
local mark = redis.call('GET', KEYS[2])
if mark then
    if string.sub(mark, 1, 1) == '>' then return mark end
    return 'closed'
end
local again = redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1
if not again then
    if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 'full' end
    redis.call('SADD', KEYS[1], ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if again then return 'again' end
return 'joined'
""")

# KEYS[1]: the channel's record, KEYS[2]: its closed mark. ARGV[1]: how long the mark lasts, in
# milliseconds (0: no mark). Returns the groups the record held, and deletes it. Runs even over
# maxmemory: it frees more than its mark takes, and a refused close would leave memberships.
CLOSE: Final = Script(
    """
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
local groups = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return groups
""",
    flags="allow-oom",
)


# KEYS[1]: a channel's mark. Deletes it if it is a moved mark.
CLEAR_MOVED: Final = Script(
    """
local mark = redis.call('GET', KEYS[1])
if mark and string.sub(mark, 1, 1) == '>' then redis.call('DEL', KEYS[1]) end
return 0
""",
    flags="allow-oom",
)

# KEYS[1]: the old channel's record, KEYS[2]: its mark. ARGV[1]: the moved mark, ARGV[2]: how
# long it lasts, in milliseconds. Returns the groups the record held, and deletes it.
TAKE_FOR_MOVE: Final = Script(
    """
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local groups = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return groups
""",
    flags="allow-oom",
)

# KEYS: group keys (of one host). ARGV: the old channel, the new one, the new one's score, the
# groups' expiry in seconds. Returns the positions (from 1) of the groups that held the old one.
SWAP: Final = Script(
    """
local moved = {}
for i, key in ipairs(KEYS) do
    if redis.call('ZREM', key, ARGV[1]) == 1 then
        redis.call('ZADD', key, ARGV[3], ARGV[2])
        redis.call('EXPIRE', key, ARGV[4])
        moved[#moved + 1] = i
    end
end
return moved
""",
    flags="allow-oom",
)


class Memberships:
    """Joins, leaves and closes for the channels of one ``RedisChannelLayer``."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._running: set[asyncio.Task[Any]] = set()  # finishing for callers that left

    async def join(self, group: str, channel: str, limit: int) -> JoinResult:
        return await self._to_the_end(self._join(group, channel, limit))

    async def leave(self, group: str, channel: str) -> None:
        await self._to_the_end(self._leave(group, channel))

    async def close(self, channel: str, ttl: float) -> list[str]:
        return await self._to_the_end(self._close(channel, ttl))

    async def move(self, old: str, new: str) -> list[str]:
        """Move ``old``'s recorded memberships to ``new`` (see the module docstring)."""
        return await self._to_the_end(self._move(old, new))

    async def _to_the_end(self, steps: Coroutine[Any, Any, T]) -> T:
        """Run ``steps`` to their end even if the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(steps)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def _join(self, group: str, channel: str, limit: int, moves: int = 0) -> JoinResult:
        await self._add(group, channel)
        home = self._home(channel)
        args = [group, limit, int(self.layer.group_expiry)]
        verdict = (await ADMIT(home, self._keys(channel), args)).decode()
        if verdict.startswith(MOVED):
            await self._discard(channel, [group])
            if moves >= MAX_MOVES:
                return "closed"
            return await self._join(group, verdict[len(MOVED) :], limit, moves + 1)
        if verdict in ("closed", "full"):
            await self._discard(channel, [group])
            return "closed" if verdict == "closed" else "full"
        return "joined"

    async def _leave(self, group: str, channel: str, moves: int = 0) -> None:
        record, mark = self._keys(channel)
        pipe = self._home(channel).pipeline(transaction=False)
        pipe.srem(record, group)
        pipe.get(mark)
        _, found = await pipe.execute()
        await self._discard(channel, [group])
        if found and found.decode().startswith(MOVED) and moves < MAX_MOVES:
            await self._leave(group, found.decode()[len(MOVED) :], moves + 1)

    async def _move(self, old: str, new: str) -> list[str]:
        expiry = int(self.layer.group_expiry)
        await CLEAR_MOVED(self._home(new), [self._keys(new)[1]], [])
        mark = [MOVED + new, expiry * 1000]
        held = await TAKE_FOR_MOVE(self._home(old), self._keys(old), mark)
        by_host: dict[int, list[str]] = {}
        for group in sorted(g.decode() for g in held):
            by_host.setdefault(self.layer.consistent_hash(group), []).append(group)
        moved: list[str] = []
        for index, groups in by_host.items():
            keys = [self.layer._group_key(g) for g in groups]
            args = [old, new, repr(self.layer.clock()), expiry]
            moved += [groups[i - 1] for i in await SWAP(self.layer.connection(index), keys, args)]
        if moved:
            pipe = self._home(new).pipeline(transaction=False)
            pipe.sadd(self._keys(new)[0], *moved)
            pipe.expire(self._keys(new)[0], expiry)
            await pipe.execute()
        return moved

    async def _close(self, channel: str, ttl: float) -> list[str]:
        mark_ms = math.ceil(ttl * 1000) if ttl > 0 else 0
        held = await CLOSE(self._home(channel), self._keys(channel), [mark_ms])
        groups = sorted(g.decode() for g in held)
        await self._discard(channel, groups)
        return groups

    def _keys(self, channel: str) -> list[str]:
        prefix = self.layer.prefix
        return [f"{prefix}:rpc.joined:{channel}", f"{prefix}:rpc.closed:{channel}"]

    def _home(self, channel: str) -> Any:
        return self.layer.connection(self.layer.consistent_hash(channel))

    async def _add(self, group: str, channel: str) -> None:
        # As channels-redis' group_add, in one round trip: scored by the time of joining (members
        # older than group_expiry are dropped on send), the key expiring after the newest.
        key = self.layer._group_key(group)
        connection = self.layer.connection(self.layer.consistent_hash(group))
        pipe = connection.pipeline(transaction=False)
        pipe.zadd(key, {channel: self.layer.clock()})
        pipe.expire(key, self.layer.group_expiry)
        await pipe.execute()

    async def _discard(self, channel: str, groups: Iterable[str]) -> None:
        """Take ``channel`` out of ``groups``: one round trip per Redis host holding some."""
        by_host: dict[int, list[str]] = {}
        for group in groups:
            by_host.setdefault(self.layer.consistent_hash(group), []).append(group)
        for index, names in by_host.items():
            pipe = self.layer.connection(index).pipeline(transaction=False)
            for group in names:
                pipe.zrem(self.layer._group_key(group), channel)
            await pipe.execute()
