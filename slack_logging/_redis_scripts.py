"""The Lua scripts :class:`~slack_logging._coordination.RedisCoordination` runs inside Redis:
each step that must be atomic across hosts (take a token, block a destination, enter a dedup
round, close it) as one script, on the server's clock. Data only."""

from __future__ import annotations

__all__ = ["ACQUIRE", "BLOCK", "CLOSE", "ENTER"]

# Token bucket on the server's clock: returns 0 (a token taken) or the milliseconds to wait.
ACQUIRE = """
local rate, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local blocked = redis.call('PTTL', KEYS[2])
if blocked > 0 then return blocked end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ttl)
return wait
"""

# Slack said wait: block the destination for every host, never shortening an existing block.
BLOCK = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

# Publish alerts into the current round of a dedup window, opening the window if there is none
# (dated ARGV[3] ms back: a window opened by a digest is not gathering). Round lists are named
# after the window's start, so a window that expired and reopened never mixes with the old one.
# Returns {opened_now, round, window age in ms, window start in ms}.
ENTER = """
local ttl = tonumber(ARGV[1])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local opened = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'start_ms', tostring(now_ms - tonumber(ARGV[3])), 'round', '1')
  redis.call('PEXPIRE', KEYS[1], ttl)
  opened = 1
end
local r = redis.call('HGET', KEYS[1], 'round')
local start_ms = redis.call('HGET', KEYS[1], 'start_ms')
local list = ARGV[2] .. start_ms .. ':' .. r
for i = 4, #ARGV do redis.call('RPUSH', list, ARGV[i]) end
redis.call('PEXPIRE', list, ttl)
return {opened, tonumber(r), now_ms - tonumber(start_ms), start_ms}
"""

# Take every alert published in round ARGV[1] of the window that started at ARGV[3] and open the
# next round; false if that round was already taken, 'gone' if the window itself is (flushed,
# evicted, expired): then nobody else will send these alerts.
CLOSE = """
local start_ms = redis.call('HGET', KEYS[1], 'start_ms')
if not start_ms or start_ms ~= ARGV[3] then return 'gone' end
if redis.call('HGET', KEYS[1], 'round') ~= ARGV[1] then return false end
redis.call('HINCRBY', KEYS[1], 'round', 1)
local list = ARGV[2] .. ARGV[3] .. ':' .. ARGV[1]
local items = redis.call('LRANGE', list, 0, -1)
redis.call('DEL', list)
return items
"""
