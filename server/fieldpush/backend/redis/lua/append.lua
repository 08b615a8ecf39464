-- Shared by publish.lua and receipt.lua (prepended to them by redis_ledger.script).
--
-- append(meta, stream, pubsub, candidate_epoch, priority, body, origin, now, history)
-- appends one event to a channel's history and announces it on the channel's
-- pub/sub doorbell; returns its offset '<epoch>:<ms>-<seq>'. ``origin`` is the
-- encoded origin token ('' for none): stored as the entry's field 'o' and
-- sent on the doorbell between priority and body (a body starts with '{', a
-- token never does). ``history`` is {max_events, max_age_ms, meta_ttl_ms}.

local function append(meta, stream, pubsub, candidate_epoch, priority, body, origin, now, history)
  local state = redis.call('HMGET', meta, 'e', 's', 't')
  local epoch, seq, ms = state[1], tonumber(state[2] or '0'), tonumber(state[3] or '0')
  if not epoch then
    -- A new history: nothing older may survive under this name.
    epoch = candidate_epoch
    redis.call('DEL', stream)
  end
  -- The entry id <ms>-<seq> is strictly greater than the last one (ms never
  -- goes back, seq grows by one), so XADD cannot refuse it.
  if now > ms then ms = now end
  seq = seq + 1
  local id = string.format('%d-%d', ms, seq)
  local announced = body
  if origin == '' then
    redis.call('XADD', stream, 'MAXLEN', history[1], id, 'p', priority, 'b', body)
  else
    redis.call('XADD', stream, 'MAXLEN', history[1], id, 'p', priority, 'b', body, 'o', origin)
    announced = origin .. ' ' .. body
  end
  redis.call('XTRIM', stream, 'MINID', string.format('%d', math.max(0, now - history[2])))
  redis.call('PEXPIRE', stream, history[2])
  redis.call('HSET', meta, 'e', epoch, 's', string.format('%d', seq), 't', string.format('%d', ms))
  redis.call('PEXPIRE', meta, history[3])
  redis.call('PUBLISH', pubsub, string.format('%d %d %s %s ', seq, ms, epoch, priority) .. announced)
  return epoch .. ':' .. id
end

local function now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
