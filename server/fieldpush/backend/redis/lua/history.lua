-- Shared by read.lua and open.lua (prepended to them by ledger.script).
--
-- read_history(meta, stream, candidate_epoch, meta_ttl, since_id, limit, since_epoch)
-- returns {epoch, seq, ms, entries}: the channel's newest position and, when
-- ``since_id`` is not '' and ``since_epoch`` is the channel's epoch, at most
-- ``limit`` entries after that stream id (exclusive). A channel read before its
-- first publish gets ``candidate_epoch`` now (its meta expiring after
-- ``meta_ttl`` ms), so that "before the first event" is a stable position that
-- a later publish continues.

local function read_history(meta, stream, candidate_epoch, meta_ttl, since_id, limit, since_epoch)
  local state = redis.call('HMGET', meta, 'e', 's', 't')
  local epoch, seq, ms = state[1], state[2] or '0', state[3] or '0'
  if not epoch then
    epoch = candidate_epoch
    redis.call('HSET', meta, 'e', epoch, 's', 0, 't', 0)
    redis.call('PEXPIRE', meta, meta_ttl)
    redis.call('DEL', stream)
  end
  local entries = {}
  if since_id ~= '' and since_epoch == epoch and tonumber(limit) > 0 then
    entries = redis.call('XRANGE', stream, '(' .. since_id, '+', 'COUNT', limit)
  end
  return {epoch, seq, ms, entries}
end
