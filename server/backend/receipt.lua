-- Record deliveries ('d') or acks ('a') of tracked events, each a user's first at most.
--
-- ARGV[1]  key prefix
-- ARGV[2]  'd' or 'a'
-- ARGV[3 + 4(i-1) ..]  per record: event id, user, device, ms
--
-- A user who is not yet a recipient (joined the audience after the publish)
-- becomes one. An ack ends the event's pending state for that user.
-- Returns one {event id, kind, user, delivered, acked} per change, where
-- delivered and acked are '<ms> <device>' or ''.

local prefix, step = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 4 do
  local event_id, user, device, ms = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local record = prefix .. ':crit:' .. event_id
  local found = redis.call('HMGET', record, 'k', 't')
  local kind = found[1]
  if kind then
    local pending = prefix .. ':pend:' .. user
    if redis.call('HSETNX', record, 'r:' .. user, '') == 1 then
      redis.call('ZADD', pending, found[2], event_id)
      redis.call('PEXPIRE', pending, redis.call('PTTL', record))
    end
    if redis.call('HSETNX', record, step .. ':' .. user, ms .. ' ' .. device) == 1 then
      if step == 'a' then
        redis.call('ZREM', pending, event_id)
      end
      local state = redis.call('HMGET', record, 'd:' .. user, 'a:' .. user)
      out[#out + 1] = {event_id, kind, user, state[1] or '', state[2] or ''}
    end
  end
end
return out
