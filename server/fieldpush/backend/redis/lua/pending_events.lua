-- Shared by pending.lua and open.lua (prepended to them by ledger.script).
--
-- pending_events(prefix, user) returns the user's pending tracked events,
-- oldest first: {event id, channel, offset, body, origin token or ''} per
-- event, the channel through which the user receives it and the event's
-- offset there. Entries whose record expired are removed.

local function pending_events(prefix, user)
  local pending = prefix .. ':pend:' .. user
  local out = {}
  for _, event_id in ipairs(redis.call('ZRANGE', pending, 0, -1)) do
    local record = prefix .. ':crit:' .. event_id
    local found = redis.call('HMGET', record, 'r:' .. user, 'b', 'og')
    local channel, body, origin = found[1], found[2], found[3] or ''
    if not body then
      redis.call('ZREM', pending, event_id)
    else
      local offset = false
      if channel ~= false and channel ~= '' then
        offset = redis.call('HGET', record, 'o:' .. channel)
      end
      if not offset then
        -- A later member: the event as stored in any of its channels.
        local fields = redis.call('HGETALL', record)
        for j = 1, #fields, 2 do
          if string.sub(fields[j], 1, 2) == 'o:' then
            channel, offset = string.sub(fields[j], 3), fields[j + 1]
            break
          end
        end
      end
      out[#out + 1] = {event_id, channel, offset, body, origin}
    end
  end
  return out
end
