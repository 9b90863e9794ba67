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

__all__ = [
    "CLOCK",
    "POP_MANY",
    "SEND_MANY",
    "SESSION_ROUTE",
    "WITHDRAW",
    "Script",
    "byte_counter",
    "sessions_prefix",
    "text",
]


def byte_counter(key: str) -> str:
    """The key counting the bytes queued in channel key ``key`` (no channel name has a ``$``)."""
    return key + "$bytes"


def sessions_prefix(prefix: str) -> str:
    """The key prefix of the sessions and routes of a layer whose key prefix is ``prefix``.

    Scripts name these keys themselves (from a channel name or a session id): the layer runs on
    standalone Redis servers, never a Cluster, where every key a script touches must be passed.
    """
    return f"{prefix}:rpc."


def text(value: bytes | str) -> str:
    """A script's answer as text (redis-py gives bytes, unless its client decodes)."""
    return value.decode() if isinstance(value, bytes) else value


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


# Seconds since the epoch on Redis' clock, for the scripts that start with it.
CLOCK: Final = """
local function clock()
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# Where a message for reply channel ``name`` goes when ``route:{name}`` holds ``route`` (see
# :mod:`channels_rpc._redis.session_scripts`: a session id, after '@' if the session lives on
# another host, after '+' if it is attached to this very channel); ``sessions`` is the key
# prefix of routes and sessions. The send script does not call this for a '+' route: such a
# channel takes its messages the normal way, and what its front-end receives after a detach
# that the route has not caught up with yet is kept by ``keep`` (the route is only ever late on
# another host). 'normal': the channel's own key (no session, or its session is attached to
# it); 'kept': appended to the session's list ``list`` (':kept' for sends, ':early' for what a
# front-end received before the detach; '' to keep nothing but answer 'keep', for a group's
# copy naming several channels: kept whole, it would hold all their names); 'dropped': its
# session overflowed earlier;
# 'overflowed': this message overflowed it (kept frames deleted); '>' .. channel: the session
# was resumed on that channel, to be sent there; '@' .. session: the session lives on another
# host, to be asked there.
SESSION_ROUTE: Final = """
local function session_route(sessions, route, name, member, list)
    if string.sub(route, 1, 1) == '+' then route = string.sub(route, 2) end
    if string.sub(route, 1, 1) == '@' then return route end
    local key = sessions .. 'session:' .. route
    local s = redis.call('HMGET', key, 'state', 'channel', 'count', 'bytes', 'max_frames',
        'max_bytes')
    if not s[1] then return 'normal' end  -- the session ended: a stale route
    if s[2] ~= name then return '>' .. s[2] end
    if s[1] == 'attached' then return 'normal' end
    if s[1] == 'overflowed' then return 'dropped' end
    if list == '' then return 'keep' end
    local count, size = tonumber(s[3]) + 1, tonumber(s[4]) + #member
    if count > tonumber(s[5]) or size > tonumber(s[6]) then
        redis.call('HSET', key, 'state', 'overflowed', 'count', 0, 'bytes', 0)
        redis.call('DEL', key .. ':kept', key .. ':early')
        return 'overflowed'
    end
    redis.call('RPUSH', key .. list, member)
    redis.call('PEXPIRE', key .. list, math.max(1, redis.call('PTTL', key)))
    redis.call('HSET', key, 'count', count, 'bytes', size)
    return 'kept'
end
"""

# KEYS: per channel key, the key and its byte counter. ARGV[1]: the expiry in seconds; then per
# key: '<capacity in messages> <capacity in bytes> <how many messages follow for it>'; then
# the messages, key by key: the member, and the Redis time after which its sender no longer
# waits ('' if it waits on). Then, only when some messages go to reply channels: the key prefix
# of routes and sessions; the numbers (from 1) of those messages, space-separated, one per
# channel they name; and the route key of each such channel, in the same order.
# Returns per message its score in whole microseconds (within one of the exact one: enough,
# with its random prefix, to find it again), or why it was refused: -1 full, -2 too many bytes,
# -3 late; or 0: sessions took it (see below); then a key's number (1, 2, ...) and a count per
# key whose expired messages it dropped, for the sender to log; then, if any message went to
# sessions, one more element: a list of (message number, where, channel) for each channel it
# names that has a route (where: SESSION_ROUTE's answer), and (message number, 'send', the
# channels without one) when some have none: those get the message in a copy that names only
# them (the member as it is would reach a detached channel's old front-end too). Scores only
# ever grow per key, so messages to one key keep their order even when two sends share a clock
# tick (a worker's progress notifications must reach the client before the call's result).
# (Integers, not exact scores as text: parsing answers is much of a sender's work.)
SEND_MANY: Final = Script(
    CLOCK
    + SESSION_ROUTE
    + """
local now = clock()
local expiry = tonumber(ARGV[1])
local out, dropped, rerouted = {}, {}, {}

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

-- The routes of the channels that messages to reply channels name, read in one MGET (a GET
-- per channel, with the key built here, tripled what the check cost Redis), and per message
-- the positions of its channels among them.
local names, routes, sessions, first = {}, {}, nil, nil
local at = 2 + #KEYS / 2
for j = 1, #KEYS / 2 do
    at = at + 2 * tonumber(string.match(ARGV[1 + j], '(%d+)$'))
end
if ARGV[at] then
    sessions, first = ARGV[at], at + 2
    for k = first, #ARGV, 1000 do  -- (Lua's unpack has a limit)
        local found = redis.call('MGET', unpack(ARGV, k, math.min(k + 999, #ARGV)))
        for n = 1, #found do routes[#routes + 1] = found[n] end
    end
    local k = 0
    for i in string.gmatch(ARGV[at + 1], '%d+') do
        k, i = k + 1, tonumber(i)
        local mine = names[i]  -- a position, or a list of them (a group's copy)
        if not mine then
            names[i] = k
        elseif type(mine) == 'number' then
            names[i] = {mine, k}
        else
            mine[#mine + 1] = k
        end
    end
end

-- The channel whose route is the k-th.
local function channel(k)
    return string.sub(ARGV[first + k - 1], #sessions + 7)  -- after sessions .. 'route:'
end

-- Whether sessions take message i (to detached or resumed channels): then it is not queued.
-- A '+' route: attached to this channel, the normal way (see above).
local function diverted(i, mine, member)
    local list = ':kept'
    if type(mine) ~= 'number' then list = '' end  -- a copy for several: kept in one of its own
    if type(mine) == 'number' then
        local route = routes[mine]
        if not route or string.byte(route, 1) == 43 then return false end  -- the usual
        mine = {mine}
    end
    local plain, taken = {}, false
    for _, k in ipairs(mine) do
        local route = routes[k]
        if route and string.byte(route, 1) ~= 43 then  -- 43: '+'
            local name = channel(k)
            local where = session_route(sessions, route, name, member, list)
            if where == 'normal' then
                plain[#plain + 1] = k
            else
                taken = true
                rerouted[#rerouted + 1] = {i, where, name}
            end
        else
            plain[#plain + 1] = k
        end
    end
    if taken and #plain > 0 then
        for n, k in ipairs(plain) do plain[n] = channel(k) end
        rerouted[#rerouted + 1] = {i, 'send', table.concat(plain, ' ')}
    end
    return taken
end

at = 2 + #KEYS / 2
for j = 1, #KEYS / 2 do
    local key, counter = KEYS[2 * j - 1], KEYS[2 * j]
    local capacity, byte_capacity, count = string.match(ARGV[1 + j], '(%d+) (%d+) (%d+)')
    capacity, byte_capacity = tonumber(capacity), tonumber(byte_capacity)
    local q = nil
    for _ = 1, tonumber(count) do
        local member, not_after = ARGV[at], tonumber(ARGV[at + 1])
        local i = #out + 1
        at = at + 2
        if not_after and now > not_after then
            out[i] = -3
        elseif names[i] and diverted(i, names[i], member) then
            out[i] = 0
        else
            q = q or open(j, key, counter)
            if q.count >= capacity then
                out[i] = -1
            elseif q.bytes + #member > byte_capacity then
                out[i] = -2
            else
                local score = math.max(now, q.last + 0.000001)
                redis.call('ZADD', key, score, member)  -- Redis passes numbers exactly
                q.last, q.count = score, q.count + 1
                q.bytes, q.added = q.bytes + #member, q.added + #member
                out[i] = score * 1000000
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
if #rerouted > 0 then out[#out + 1] = rerouted end
return out
"""
)

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
    CLOCK
    + """
if ARGV[1] ~= '' and clock() <= tonumber(ARGV[1]) then return -1 end
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
