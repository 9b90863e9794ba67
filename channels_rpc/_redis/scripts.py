"""The Lua scripts of the Redis layer, each run by its SHA and loaded once per connection."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Sequence
from typing import Any, Final

from redis.exceptions import NoScriptError

__all__ = ["POP_MANY", "SEND_MANY", "WITHDRAW", "Script"]


class Script:
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


# KEYS: the channel key of each message; ARGV: now, expired-before, expiry, then a member and
# a capacity per message. Returns 1 (added) or 0 (channel full) per message. Scores only ever
# grow, so messages to one key keep their order even when two sends share a clock tick (a
# worker's progress notifications must reach the client before the call's result).
SEND_MANY: Final = Script("""
local now, cutoff, expiry = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local added = {}
for i, key in ipairs(KEYS) do
    local member, capacity = ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
    redis.call('ZREMRANGEBYSCORE', key, 0, cutoff)
    if redis.call('ZCARD', key) >= capacity then
        added[i] = 0
    else
        local score = now
        local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
        if last[2] and tonumber(last[2]) >= score then
            score = tonumber(last[2]) + 0.000001
        end
        redis.call('ZADD', key, score, member)
        redis.call('EXPIRE', key, expiry)
        added[i] = 1
    end
end
return added
""")

# KEYS: channel keys, in order of preference; ARGV[1]: how many messages at most. Returns the
# popped members and scores, flat, oldest first per key.
POP_MANY: Final = Script("""
local limit = tonumber(ARGV[1])
local out = {}
for _, key in ipairs(KEYS) do
    local want = limit - #out / 2
    if want <= 0 then break end
    local items = redis.call('ZPOPMIN', key, want)
    for j = 1, #items do out[#out + 1] = items[j] end
end
return out
""")

# KEYS[1]: a channel key; ARGV: the random prefixes of the messages to remove. Returns how many
# were still queued (and now never will be received). Linear in the queue, which holds at most
# its capacity: fine for cancellations.
WITHDRAW: Final = Script("""
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
