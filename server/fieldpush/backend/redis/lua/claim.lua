-- Claim tracked events whose ack deadline passed, for a lease.
--
-- ARGV[1]  key prefix
-- ARGV[2]  lease (ms): the claimed events' deadlines move that far ahead, so
--          no other node claims them meanwhile; a node that dies holding a
--          claim only delays the escalation by the lease
-- ARGV[3]  most events to claim
--
-- Events every recipient acked, and records that expired, are settled
-- (removed from the deadlines) instead. Returns {event id, kind, user, ...}
-- per claimed event, listing the recipients that did not ack.

local prefix = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local deadlines = prefix .. ':deadlines'
local due = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, event_id in ipairs(due) do
  local fields = redis.call('HGETALL', prefix .. ':crit:' .. event_id)
  local kind, recipients, acked = nil, {}, {}
  for j = 1, #fields, 2 do
    local name = fields[j]
    local head = string.sub(name, 1, 2)
    if name == 'k' then
      kind = fields[j + 1]
    elseif head == 'r:' then
      recipients[#recipients + 1] = string.sub(name, 3)
    elseif head == 'a:' then
      acked[string.sub(name, 3)] = true
    end
  end
  local claim = {event_id, kind}
  for _, user in ipairs(recipients) do
    if not acked[user] then claim[#claim + 1] = user end
  end
  if not kind or (#recipients > 0 and #claim == 2) then
    redis.call('ZREM', deadlines, event_id)
  else
    redis.call('ZADD', deadlines, now + tonumber(ARGV[2]), event_id)
    out[#out + 1] = claim
  end
end
return out
