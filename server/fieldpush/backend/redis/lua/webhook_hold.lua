-- Take or renew the change-feed webhook's lease (WebhookState.hold).
--
-- KEYS[1]  the lease, a string '<token> <holder>' with a TTL
-- KEYS[2]  the fencing counter (INCR; never expires)
-- ARGV[1]  the holder
-- ARGV[2]  the lease's time to live (ms)
-- Returns the fencing token, or false when another holder has the lease.

local lease = redis.call('GET', KEYS[1])
if lease then
  local token, holder = string.match(lease, '^(%d+) (.*)$')
  if holder ~= ARGV[1] then
    return false
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(token)
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
