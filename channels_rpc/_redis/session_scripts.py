"""The Lua scripts of sessions: one per operation of ``sessions.Sessions``.

Why apart from it: the scripts are half of the sessions' code, and they are read against the
keys below, each with its KEYS, ARGV and answer in the comment above it; ``Sessions`` then reads
as a session's life, saying which host runs each script and what becomes of its answer.
``SESSION_ROUTE``, what a send to a channel with a session does, is in
:mod:`channels_rpc._redis.scripts`, with the send script that runs it.

Keys (``P`` is ``sessions_prefix`` of the layer's prefix)::

    P session:{S}            hash: principal, channel (attached now, or last), channels (every
                             channel it had, space-separated), state (attached, detached,
                             overflowed), seq, count and bytes kept, max_frames, max_bytes,
                             window, expires_at (Redis time; while not attached)
    P session:{S}:early      list: what the old front-end received for the channel (``keep``)
    P session:{S}:kept       list: what sends to the channel brought while detached
    P session:{S}:calls      hash: '<channel> <token>' -> JSON [id as JSON text, deadline, queue]
    P route:{channel}        the session of a reply channel: its id, after '@' when the session
                             lives on another host, after '+' while it is attached to this
                             channel (then the send script reads nothing more: sends go the
                             normal way)
    P sessions:expiring      sorted set of detached sessions by the end of their window
"""

from __future__ import annotations

from typing import Final

from channels_rpc._redis.scripts import CLOCK, SESSION_ROUTE, Script

__all__ = ["DETACH", "END", "KEEP", "OPEN", "REPOINT", "RESUME", "SESSION_ASK", "SWEEP", "TRACK"]

# KEYS[1]: the session, KEYS[2]: its channel's route. ARGV: the session id, the principal, the
# channel, the window, max frames, max bytes, the keys' TTL. Returns 1, or 0 if the id is taken.
OPEN: Final = Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'principal', ARGV[2], 'channel', ARGV[3], 'channels', ARGV[3],
    'state', 'attached', 'seq', 0, 'count', 0, 'bytes', 0, 'window', ARGV[4],
    'max_frames', ARGV[5], 'max_bytes', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('SET', KEYS[2], '+' .. ARGV[1], 'EX', ARGV[7])
return 1
""")

# KEYS[1]: the session, KEYS[2]: its calls. ARGV: the call's token, its record ('' to untrack),
# the channel it was made on ('' for the session's channel now), the TTL of an attached session.
# Returns 1, or 0 if the session is unknown.
TRACK: Final = Script("""
local s = redis.call('HMGET', KEYS[1], 'channel', 'state')
if not s[1] then return 0 end
local field = (ARGV[3] ~= '' and ARGV[3] or s[1]) .. ' ' .. ARGV[1]
if ARGV[2] == '' then
    redis.call('HDEL', KEYS[2], field)
    return 1
end
redis.call('HSET', KEYS[2], field, ARGV[2])
if s[2] == 'attached' then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    redis.call('EXPIRE', KEYS[2], ARGV[4])
else
    redis.call('PEXPIRE', KEYS[2], math.max(1, redis.call('PTTL', KEYS[1])))
end
return 1
""")

# KEYS[1]: the session, KEYS[2]: its calls, KEYS[3]: sessions:expiring, KEYS[4] (when on this
# host): the channel's route. ARGV: the session id, the channel, the window, the seq, the grace
# after the window, the TTL of routes; then pending calls to record, field and record each.
# Returns 'detached', 'moved' (attached to another channel now) or 'unknown'.
DETACH: Final = Script(
    CLOCK
    + """
local s = redis.call('HMGET', KEYS[1], 'channel', 'state')
if not s[1] then return 'unknown' end
if s[1] ~= ARGV[2] then return 'moved' end
if s[2] ~= 'attached' then return 'detached' end
local ends = clock() + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'detached', 'seq', ARGV[4],
    'expires_at', string.format('%.17g', ends))
redis.call('ZADD', KEYS[3], ends, ARGV[1])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
local ttl = math.ceil(tonumber(ARGV[3]) + tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[1], 'EX', math.max(ttl, tonumber(ARGV[6]))) end
return 'detached'
"""
)

# KEYS[1]: the channel's route. ARGV: the sessions' key prefix, the channel, the message.
# Returns 'none' (no route) or SESSION_ROUTE's answer, keeping in the session's early list.
KEEP: Final = Script(
    SESSION_ROUTE
    + """
local route = redis.call('GET', KEYS[1])
if not route then return 'none' end
return session_route(ARGV[1], route, ARGV[2], ARGV[3], ':early')
"""
)

# ARGV: the sessions' key prefix, a session living on this host, the channel a message names,
# the message, the session's list to keep it in. Returns SESSION_ROUTE's answer: what a sender
# or ``keep`` asks the session's host when the channel's host routes it there ('@' .. session).
SESSION_ASK: Final = Script(
    SESSION_ROUTE
    + """
return session_route(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""
)

# KEYS[1]: the session, KEYS[2]: its calls, KEYS[3]: its kept list, KEYS[4]: its early list,
# KEYS[5]: sessions:expiring, KEYS[6] (when on this host): the new channel's route. ARGV: the
# session id, the principal, the new channel, the TTL of an attached session, the sessions' key
# prefix. Returns {'refused', reason}, or {'resumed', channel before, seq, window, frames,
# calls (flat), state before ('attached': taken over)}. The channel before, if attached, has
# its route lose its '+' here when it lives on this host (its route is on this host then),
# else by the caller, next.
RESUME: Final = Script(
    CLOCK
    + """
local s = redis.call('HMGET', KEYS[1], 'principal', 'state', 'expires_at', 'channel',
    'channels', 'seq', 'window')
if not s[1] or s[1] ~= ARGV[2] then return {'refused', 'unknown or expired'} end
if s[2] ~= 'attached' then
    if clock() >= tonumber(s[3]) then return {'refused', 'unknown or expired'} end
    if s[2] == 'overflowed' then return {'refused', 'overflowed'} end
end
local channels = s[5]
if not string.find(' ' .. channels .. ' ', ' ' .. ARGV[3] .. ' ', 1, true) then
    channels = channels .. ' ' .. ARGV[3]
end
redis.call('HSET', KEYS[1], 'state', 'attached', 'channel', ARGV[3], 'channels', channels,
    'count', 0, 'bytes', 0)
redis.call('HDEL', KEYS[1], 'expires_at')
local before = ARGV[5] .. 'route:' .. s[4]
local route = redis.call('GET', before)
if route == '+' .. ARGV[1] then
    redis.call('SET', before, ARGV[1], 'PX', math.max(1, redis.call('PTTL', before)))
end
redis.call('ZREM', KEYS[5], ARGV[1])
local frames = redis.call('LRANGE', KEYS[4], 0, -1)
for _, frame in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do frames[#frames + 1] = frame end
redis.call('DEL', KEYS[3], KEYS[4])
local calls = redis.call('HGETALL', KEYS[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if KEYS[6] then redis.call('SET', KEYS[6], '+' .. ARGV[1], 'EX', ARGV[4]) end
return {'resumed', s[4], s[6], s[7], frames, calls, s[2]}
""",
    flags="allow-oom",  # frees the kept frames; its few writes are worth it
)

# Deletes session ``id`` (its keys, its routes on this host); its channels, space-separated.
_FORGET = """
local function forget(prefix, id, channels)
    local key = prefix .. 'session:' .. id
    for name in string.gmatch(channels, '%S+') do
        local route = prefix .. 'route:' .. name
        local value = redis.call('GET', route)
        if value == id or value == '+' .. id then redis.call('DEL', route) end
    end
    redis.call('DEL', key, key .. ':calls', key .. ':kept', key .. ':early')
end
"""

# KEYS[1]: the session, KEYS[2]: sessions:expiring. ARGV: the sessions' key prefix, the session
# id, a channel ('' for any). Ends the session unless it is attached to another channel than
# the one given; returns its channels (space-separated), or false.
END: Final = Script(
    _FORGET
    + """
local s = redis.call('HMGET', KEYS[1], 'channel', 'channels')
if not s[1] or (ARGV[3] ~= '' and s[1] ~= ARGV[3]) then return false end
forget(ARGV[1], ARGV[2], s[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return s[2]
""",
    flags="allow-oom",
)

# KEYS[1]: sessions:expiring. ARGV: the sessions' key prefix, a time on Redis' clock ('' for
# now), how many at most. Ends the detached sessions whose window ended by then; returns their
# ids and channels, flat.
SWEEP: Final = Script(
    CLOCK
    + _FORGET
    + """
local now = tonumber(ARGV[2]) or clock()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now),
    'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[1], id)
    local s = redis.call('HMGET', ARGV[1] .. 'session:' .. id, 'state', 'expires_at', 'channels')
    if s[1] and s[1] ~= 'attached' and tonumber(s[2]) <= now then
        forget(ARGV[1], id, s[3])
        out[#out + 1] = id
        out[#out + 1] = s[3]
    end
end
return out
""",
    flags="allow-oom",
)

# KEYS[1]: a route. ARGV[1]: the value it must hold to change, ARGV[2]: its new value ('' to
# delete it). Returns 1 if it changed.
REPOINT: Final = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', math.max(1, redis.call('PTTL', KEYS[1])))
return 1
""",
    flags="allow-oom",
)
