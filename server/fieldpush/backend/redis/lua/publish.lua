-- Append one event to the history of every channel of a publish, then announce
-- it on each channel's pub/sub doorbell (append.lua). Atomic: Redis runs the script alone.
--
-- KEYS[1]            idempotency key (a placeholder, never touched, when ARGV[1] == '0')
-- KEYS[2i], [2i+1]   meta hash and stream of channel i
-- ARGV[1]  '1' when the publish has an idempotency key
-- ARGV[2]  request fingerprint
-- ARGV[3]  idempotency TTL (ms)
-- ARGV[4]  event id
-- ARGV[5]  priority
-- ARGV[6]  event body (JSON)
-- ARGV[7]  history: maximum events per channel
-- ARGV[8]  history: maximum age (ms)
-- ARGV[9]  meta TTL (ms)
-- ARGV[10] kind of a tracked (critical) event, '' when not tracked
-- ARGV[11] its ack deadline (ms after now; 0: none)
-- ARGV[12] key prefix, ARGV[13] receipts TTL (ms)
-- ARGV[14] encoded origin of the event ('' for none)
-- ARGV[15 + 3(i-1) ..]  per channel: candidate epoch, pub/sub name, channel name
--
-- A tracked event (see redis_ledger.py for the keys) is recorded in the same
-- step: its hash with every recipient user, a pending entry per recipient and
-- its deadline. Recipients: the user of a user channel, else the channel's
-- audience set. These keys are not declared in KEYS (they depend on the
-- audience): fine on one Redis, not on Redis Cluster.
--
-- Returns {status, event id, channel 1, offset 1, channel 2, offset 2, ...} where
-- status is 'new' or 'dup' (a retry: the first publish's result), or {'conflict'}
-- when the idempotency key was used with another fingerprint.
-- The idempotency record is JSON: {"f": fingerprint, "id": event id, "o": [channel, offset, ...]}.

if ARGV[1] == '1' then
  local seen = redis.call('GET', KEYS[1])
  if seen then
    local record = cjson.decode(seen)
    if record.f ~= ARGV[2] then
      return {'conflict'}
    end
    local out = {'dup', record.id}
    for _, value in ipairs(record.o) do
      out[#out + 1] = value
    end
    return out
  end
end

local now = now_ms()
local history = {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
local offsets = {}

for i = 1, (#KEYS - 1) / 2 do
  local arg = 15 + 3 * (i - 1)
  offsets[#offsets + 1] = ARGV[arg + 2]
  offsets[#offsets + 1] = append(KEYS[2 * i], KEYS[2 * i + 1], ARGV[arg + 1], ARGV[arg],
    ARGV[5], ARGV[6], ARGV[14], now, history)
end

if ARGV[10] ~= '' then
  local prefix, ttl, event_id = ARGV[12], ARGV[13], ARGV[4]
  local record = prefix .. ':crit:' .. event_id
  local deadline = 0
  if tonumber(ARGV[11]) > 0 then deadline = now + tonumber(ARGV[11]) end
  redis.call('HSET', record, 'k', ARGV[10], 't', string.format('%d', now),
    'dl', string.format('%d', deadline), 'b', ARGV[6])
  if ARGV[14] ~= '' then
    redis.call('HSET', record, 'og', ARGV[14])
  end
  for i = 1, #offsets, 2 do
    local channel = offsets[i]
    redis.call('HSET', record, 'o:' .. channel, offsets[i + 1])
    local users
    if string.sub(channel, 1, 5) == 'user:' then
      users = {string.sub(channel, 6)}
    else
      users = redis.call('SMEMBERS', prefix .. ':aud:' .. channel)
    end
    for _, user in ipairs(users) do
      if redis.call('HSETNX', record, 'r:' .. user, channel) == 1 then
        local pending = prefix .. ':pend:' .. user
        redis.call('ZADD', pending, now, event_id)
        redis.call('PEXPIRE', pending, ttl)
      end
    end
  end
  redis.call('PEXPIRE', record, ttl)
  if deadline > 0 then
    redis.call('ZADD', prefix .. ':deadlines', deadline, event_id)
  end
end

if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], cjson.encode({f = ARGV[2], id = ARGV[4], o = offsets}),
    'PX', ARGV[3])
end
local out = {'new', ARGV[4]}
for _, value in ipairs(offsets) do
  out[#out + 1] = value
end
return out
