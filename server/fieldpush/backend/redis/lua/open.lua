-- A new session in one step: the per-user cap, presence, audience, the reads
-- of its welcome and replays, and the user's pending events
-- (RedisBackend.open_session; preceded by history.lua and pending_events.lua).
--
-- ARGV: prefix, user, session, user value (JSON [node, device, since]),
--       channel value (JSON [user, node, device, since]), cap (0: none),
--       refuse over cap ('1'/'0'),
--       n, then n presence channels,
--       m, then m audience channels (of this user),
--       r, then 7 arguments per read as read.lua's (meta, stream, candidate
--       epoch, meta TTL, since id, limit, since epoch),
--       then the device, node, app and the most devices per user (0: no limit).
--
-- Returns {admitted (1/0), others, reads, pending, device}: others is {session,
-- value, beat, ...} for the user's live sessions (entries of nodes without a
-- beat are removed), reads one read_history answer per read, pending as
-- pending_events, device the registry's JSON of the session's device
-- ({first_seen, last_seen, node, app, state}) after this hello.
-- Refused: nothing is written and reads and pending are empty.

local prefix, user, session = ARGV[1], ARGV[2], ARGV[3]
local user_key = prefix .. ':pres:u:' .. user
local raw = redis.call('HGETALL', user_key)
local others, count = {}, 0
for i = 1, #raw, 2 do
  local node = cjson.decode(raw[i + 1])[1]
  local beat = redis.call('GET', prefix .. ':pres:n:' .. node)
  if beat then
    others[#others + 1] = raw[i]
    others[#others + 1] = raw[i + 1]
    others[#others + 1] = beat
    count = count + 1
  else
    redis.call('HDEL', user_key, raw[i])
  end
end
local cap = tonumber(ARGV[6])
if ARGV[7] == '1' and cap > 0 and count + 1 > cap then
  return {0, others, {}, {}}
end

redis.call('HSET', user_key, session, ARGV[4])
local at = 9
for _ = 1, tonumber(ARGV[8]) do
  redis.call('HSET', prefix .. ':pres:c:' .. ARGV[at], session, ARGV[5])
  at = at + 1
end
local audience = tonumber(ARGV[at])
at = at + 1
for _ = 1, audience do
  redis.call('SADD', prefix .. ':aud:' .. ARGV[at], user)
  at = at + 1
end
local reads = {}
local count_reads = tonumber(ARGV[at])
at = at + 1
for _ = 1, count_reads do
  reads[#reads + 1] = read_history(
    ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5], ARGV[at + 6])
  at = at + 7
end

-- The device registry: <prefix>:dev:<user>, device -> JSON.
local device, node, app, max_devices = ARGV[at], ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 3])
local devices_key = prefix .. ':dev:' .. user
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local known = redis.call('HGET', devices_key, device)
local record
if known then
  record = cjson.decode(known)
else
  if max_devices > 0 and redis.call('HLEN', devices_key) >= max_devices then
    local all = redis.call('HGETALL', devices_key)
    local oldest, oldest_seen = nil, nil
    for i = 1, #all, 2 do
      local other = cjson.decode(all[i + 1])
      if other.state == 'active' and (oldest_seen == nil or other.last_seen < oldest_seen) then
        oldest, oldest_seen = all[i], other.last_seen
      end
    end
    if oldest then redis.call('HDEL', devices_key, oldest) end
  end
  record = {first_seen = now, state = 'active'}
end
record.last_seen, record.node, record.app = now, node, app
local encoded = cjson.encode(record)
redis.call('HSET', devices_key, device, encoded)
return {1, others, reads, pending_events(prefix, user), encoded}
