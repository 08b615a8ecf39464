-- Append one event to the history of every channel of a publish, then announce
-- it on each channel's pub/sub doorbell. Atomic: Redis runs the script alone.
--
-- KEYS[1]            idempotency key (a placeholder when ARGV[1] == '0')
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
-- ARGV[10 + 3(i-1) ..]  per channel: candidate epoch, pub/sub name, channel name
--
-- Returns {'new', result}, {'dup', result} or {'conflict', ''}, where result is
-- "<event id>\n<channel>\n<offset>\n<channel>\n<offset>...".

if ARGV[1] == '1' then
  local seen = redis.call('GET', KEYS[1])
  if seen then
    local newline = string.find(seen, '\n', 1, true)
    if string.sub(seen, 1, newline - 1) == ARGV[2] then
      return {'dup', string.sub(seen, newline + 1)}
    end
    return {'conflict', ''}
  end
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local max_age = tonumber(ARGV[8])
local parts = {ARGV[4]}

for i = 1, (#KEYS - 1) / 2 do
  local meta, stream = KEYS[2 * i], KEYS[2 * i + 1]
  local arg = 10 + 3 * (i - 1)
  local state = redis.call('HMGET', meta, 'e', 's', 't')
  local epoch, seq, ms = state[1], tonumber(state[2] or '0'), tonumber(state[3] or '0')
  if not epoch then
    -- A new history: nothing older may survive under this name.
    epoch = ARGV[arg]
    redis.call('DEL', stream)
  end
  if now > ms then ms = now end
  seq = seq + 1
  redis.call('XADD', stream, 'MAXLEN', ARGV[7], ms .. '-' .. seq, 'p', ARGV[5], 'b', ARGV[6])
  redis.call('XTRIM', stream, 'MINID', now - max_age)
  redis.call('PEXPIRE', stream, max_age)
  redis.call('HSET', meta, 'e', epoch, 's', seq, 't', ms)
  redis.call('PEXPIRE', meta, ARGV[9])
  redis.call('PUBLISH', ARGV[arg + 1], seq .. ' ' .. ms .. ' ' .. epoch .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
  parts[#parts + 1] = ARGV[arg + 2]
  parts[#parts + 1] = epoch .. ':' .. ms .. '-' .. seq
end

local result = table.concat(parts, '\n')
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], ARGV[2] .. '\n' .. result, 'PX', ARGV[3])
end
return {'new', result}
