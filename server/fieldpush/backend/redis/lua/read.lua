-- A channel's newest position and the events after a position, in one step.
--
-- KEYS[1]  meta hash, KEYS[2] stream
-- ARGV[1]  candidate epoch (used when the channel has no history yet)
-- ARGV[2]  meta TTL (ms)
-- ARGV[3]  stream id to read after (exclusive), or '' for none
-- ARGV[4]  maximum entries
-- ARGV[5]  the epoch of that position
--
-- Returns {epoch, seq, ms, entries}; entries only when the epochs match.

local state = redis.call('HMGET', KEYS[1], 'e', 's', 't')
local epoch, seq, ms = state[1], state[2] or '0', state[3] or '0'
if not epoch then
  -- Give the channel an epoch now, so that "before the first event" is a
  -- stable position that a later publish continues.
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0, 't', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('DEL', KEYS[2])
end
local entries = {}
if ARGV[3] ~= '' and ARGV[5] == epoch and tonumber(ARGV[4]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[3], '+', 'COUNT', ARGV[4])
end
return {epoch, seq, ms, entries}
