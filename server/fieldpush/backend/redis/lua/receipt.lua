-- Record deliveries and acks of tracked events and announce the changes (each
-- user's first delivery and first ack) on the `dispatch` channel: one
-- `receipt` event per tracked event per call, listing the changed receipts.
-- One atomic step (append.lua is prepended).
--
-- ARGV[1]      key prefix
-- ARGV[2..4]   history of dispatch: max events, max age (ms), meta TTL (ms)
-- ARGV[5..8]   dispatch: meta key, stream key, pub/sub name, candidate epoch
-- ARGV[9 + 6(i-1) ..]  per step: 'd' (delivered) or 'a' (acked), event id,
--              user, device, ms, id for the receipt event (the first changed
--              step of an event gives its receipt event's id)
--
-- A user who is not yet a recipient (joined the audience after the publish)
-- becomes one. An ack ends the event's pending state for that user.
-- Returns the number of receipt events published.

local prefix = ARGV[1]
local history = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local now = now_ms()
local changed = {}  -- event id -> {id, kind, receipts: user -> receipt}
local order = {}
local tracked = {}  -- event id -> {kind, publish ms} or false (a call has many steps per event)

local function step_of(raw)
  if not raw then return nil, nil end
  local space = string.find(raw, ' ', 1, true)
  return tonumber(string.sub(raw, 1, space - 1)), string.sub(raw, space + 1)
end

for i = 9, #ARGV, 6 do
  local step, event_id, user, device, ms = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local record = prefix .. ':crit:' .. event_id
  local found = tracked[event_id]
  if found == nil then
    found = redis.call('HMGET', record, 'k', 't')
    if not found[1] then found = false end
    tracked[event_id] = found
  end
  if found then
    local kind = found[1]
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
      local delivered_at, delivered_by = step_of(state[1])
      local acked_at, acked_by = step_of(state[2])
      local entry = changed[event_id]
      if not entry then
        entry = {id = ARGV[i + 5], kind = kind, receipts = {}}
        changed[event_id] = entry
        order[#order + 1] = event_id
      end
      entry.receipts[user] = {
        user = user,
        device = acked_by or delivered_by or cjson.null,
        delivered_at = delivered_at or cjson.null,
        acked_at = acked_at or cjson.null,
      }
    end
  end
end

for _, event_id in ipairs(order) do
  local entry = changed[event_id]
  local receipts = {}
  for _, receipt in pairs(entry.receipts) do
    receipts[#receipts + 1] = receipt
  end
  table.sort(receipts, function(a, b) return a.user < b.user end)
  local body = cjson.encode({
    id = entry.id, kind = 'receipt', priority = 'high',
    data = {event = event_id, kind = entry.kind, receipts = receipts},
  })
  append(ARGV[5], ARGV[6], ARGV[7], ARGV[8], 'high', body, '', now, history)
end
return #order
