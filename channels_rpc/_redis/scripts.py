"""The Lua scripts of the Redis layer, each run by its SHA and loaded once per connection.

Every channel key has a byte counter next to it (:func:`byte_counter`): the bytes of the
members it holds, kept by the send script (adds, expired messages), by ``WITHDRAW`` (exactly)
and by the popper (:mod:`channels_rpc._redis.pop`, on its next pop: a blocking pop cannot run
in a script). It expires with its key, and a send that finds the key empty starts it again
from zero, so a receiver that died before subtracting what it took leaves no lasting error.

Scripts take the time from Redis (``TIME``), never from the caller: the scores of every
front-end and worker are on one clock, and a host whose clock is ahead can no longer expire
the messages other hosts queued.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.exceptions import NoScriptError, ResponseError

__all__ = ["POP_MANY", "SEND_MANY", "WITHDRAW", "Script", "byte_counter"]


def byte_counter(key: str) -> str:
    """The key counting the bytes queued in channel key ``key`` (no channel name has a ``$``)."""
    return key + "$bytes"


@dataclass(frozen=True, slots=True)
class _Variant:
    source: str
    sha: str


def _variant(source: str) -> _Variant:
    return _Variant(source, hashlib.sha1(source.encode()).hexdigest())


class Script:
    """A Lua script run by its SHA, loaded once per connection.

    On Redis >= 7 it runs with a ``#!lua`` shebang, so Redis applies its ``flags`` before the
    script starts: without ``allow-oom``, a script is refused whole while Redis is over
    ``maxmemory``. Where the shebang is refused (Redis < 7, fakeredis: "unexpected symbol near
    '#'"), the plain source runs, and Redis checks ``maxmemory`` only at the script's first
    write, if that command is one that may grow memory (``ZADD``, not ``ZREMRANGEBYRANK``): the
    limit then holds only approximately.
    """

    def __init__(self, body: str, *, flags: str = "") -> None:
        shebang = f"#!lua flags={flags}\n" if flags else "#!lua\n"
        self.variants = (_variant(shebang + body), _variant(body))
        self._chosen: weakref.WeakKeyDictionary[Any, _Variant] = weakref.WeakKeyDictionary()

    async def __call__(self, connection: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        variant = self._chosen.get(connection)
        if variant is None:
            return await self._first_call(connection, keys, args)
        try:
            return await connection.evalsha(variant.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted and forgot it
            return await connection.eval(variant.source, len(keys), *keys, *args)

    async def _first_call(self, connection: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        # Loaded up front rather than on a NOSCRIPT error: fakeredis' TCP server drops the
        # connection after an error reply (RESP3), and one round trip per pool is cheap. A
        # refused shebang fails at load (Redis < 7) or at the first run (fakeredis); either
        # way nothing ran.
        flagged, plain = self.variants
        try:
            await connection.script_load(flagged.source)
            result = await connection.evalsha(flagged.sha, len(keys), *keys, *args)
            chosen = flagged
        except ResponseError as exc:
            if "near '#'" not in str(exc):
                raise
            await connection.script_load(plain.source)
            result = await connection.evalsha(plain.sha, len(keys), *keys, *args)
            chosen = plain
        self._chosen[connection] = chosen
        return result


# KEYS: per channel key, the key and its byte counter. ARGV[1]: the expiry in seconds; then per
# key: '<capacity in messages> <capacity in bytes> <how many messages follow for it>'; then
# the messages, key by key: the member, and the Redis time after which its sender no longer
# waits ('' if it waits on). Returns per message its score in whole microseconds (within one of the
# exact one: enough, with its random prefix, to find it again), or why it was refused: -1 full,
# -2 too many bytes, -3 late; then a key's number (1, 2, ...) and a count per key whose
# expired messages it dropped, for the sender to log. Scores only ever grow per key, so
# messages to one key keep their order even when two sends share a clock tick (a worker's
# progress notifications must reach the client before the call's result). (Integers, not
# exact scores as text: parsing answers is much of a sender's work.)
SEND_MANY: Final = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expiry = tonumber(ARGV[1])
local out, dropped = {}, {}

-- A key's state: its expired messages go first (at most 1000 a call, and their bytes with
-- them); an empty key holds no bytes, whatever its counter says.
local function open(j, key, counter)
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local q = {count = 0, bytes = 0, last = 0, added = 0}
    if oldest[2] == nil then
        return q
    end
    local size = 0
    if tonumber(oldest[2]) <= now - expiry then
        local cutoff = string.format('%.17g', now - expiry)
        local old = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0, 1000)
        redis.call('ZREMRANGEBYRANK', key, 0, #old - 1)
        for _, member in ipairs(old) do size = size + #member end
        dropped[#dropped + 1] = j
        dropped[#dropped + 1] = #old
    end
    q.count = redis.call('ZCARD', key)
    if q.count == 0 then
        return q
    end
    q.old = true
    if size > 0 then redis.call('DECRBY', counter, size) end
    q.bytes = math.max(0, tonumber(redis.call('GET', counter)) or 0)
    q.last = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
    return q
end

local at = 2 + #KEYS / 2
for j = 1, #KEYS / 2 do
    local key, counter = KEYS[2 * j - 1], KEYS[2 * j]
    local capacity, byte_capacity, count = string.match(ARGV[1 + j], '(%d+) (%d+) (%d+)')
    capacity, byte_capacity = tonumber(capacity), tonumber(byte_capacity)
    local q = nil
    for _ = 1, tonumber(count) do
        local member, not_after = ARGV[at], tonumber(ARGV[at + 1])
        at = at + 2
        if not_after and now > not_after then
            out[#out + 1] = -3
        else
            q = q or open(j, key, counter)
            if q.count >= capacity then
                out[#out + 1] = -1
            elseif q.bytes + #member > byte_capacity then
                out[#out + 1] = -2
            else
                local score = math.max(now, q.last + 0.000001)
                redis.call('ZADD', key, score, member)  -- Redis passes numbers exactly
                q.last, q.count = score, q.count + 1
                q.bytes, q.added = q.bytes + #member, q.added + #member
                out[#out + 1] = score * 1000000
            end
        end
    end
    if q and q.added > 0 then
        if q.old then
            redis.call('INCRBY', counter, q.added)
            redis.call('EXPIRE', counter, expiry)
        else
            redis.call('SET', counter, q.added, 'EX', expiry)
        end
        redis.call('EXPIRE', key, expiry)
    end
end
for _, n in ipairs(dropped) do out[#out + 1] = n end
return out
""")

# KEYS: channel keys, in order of preference; ARGV[1]: how many messages at most. Returns the
# popped messages as key, member, score, flat, oldest first per key. (Redis < 7 only: the
# popper subtracts their bytes from the counters on its next pop, as it does after BZMPOP.)
POP_MANY: Final = Script(
    """
local limit = tonumber(ARGV[1])
local out = {}
for _, key in ipairs(KEYS) do
    local want = limit - #out / 3
    if want <= 0 then break end
    local items = redis.call('ZPOPMIN', key, want)
    for j = 1, #items, 2 do
        out[#out + 1] = key
        out[#out + 1] = items[j]
        out[#out + 1] = items[j + 1]
    end
end
return out
""",
    flags="allow-oom",  # takes memory back: also when Redis is full
)

# KEYS[1]: a channel key, KEYS[2]: its byte counter. ARGV[1]: a Redis time that must have
# passed first ('' for none), then per message: its random prefix and the lowest and highest
# score it may have, in whole microseconds (its score from the send script twice, for a
# cancellation). Returns how many were still queued (and now never will be received), or -1
# if Redis' clock has not reached ARGV[1] yet. O(log N) per message in a queue of N, plus the
# few messages whose scores fall in its range.
WITHDRAW: Final = Script(
    """
if ARGV[1] ~= '' then
    local t = redis.call('TIME')
    if tonumber(t[1]) + tonumber(t[2]) / 1000000 <= tonumber(ARGV[1]) then return -1 end
end
local removed, size = 0, 0
for i = 2, #ARGV, 3 do
    local prefix = ARGV[i]
    -- Microseconds, give or take one, on either side: a few neighbours at most, told apart
    -- by the prefix.
    local low = string.format('%.17g', (tonumber(ARGV[i + 1]) - 2) / 1000000)
    local high = string.format('%.17g', (tonumber(ARGV[i + 2]) + 2) / 1000000)
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], low, high)) do
        if string.sub(member, 1, #prefix) == prefix then
            removed = removed + redis.call('ZREM', KEYS[1], member)
            size = size + #member
        end
    end
end
if size > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('DECRBY', KEYS[2], size)
end
return removed
""",
    flags="allow-oom",  # takes memory back: also when Redis is full
)
