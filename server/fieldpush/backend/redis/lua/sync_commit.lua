-- Commit the writes of one mutate batch, in order (RecordStore.commit).
-- ARGV: prefix, results ttl ms, log max entries, log min id ("" = no age trim),
--       an epoch for the log if it has none yet, then per write: result key ("" = none), result, record key ("" = none),
--       expected version, record blob ("" = only check the version), number of
--       log entries, the log entries, the number of file ids, the file ids
--       (each indexed to the record key: <prefix>:sync:file:<id>).
-- Returns per write: 0 (applied), the kept result (a replay), or -1 (stale).
local prefix = ARGV[1]
local ttl = tonumber(ARGV[2])
local maxlen = ARGV[3]
local minid = ARGV[4]
local log = prefix .. ':sync:log'
redis.call('SET', log .. ':e', ARGV[5], 'NX')
local out = {}
local stale = {}
local i = 6
while i <= #ARGV do
  local result_key, result, record = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local expected, blob, nlog = tonumber(ARGV[i + 3]), ARGV[i + 4], tonumber(ARGV[i + 5])
  local entries_at = i + 6
  local nfiles = tonumber(ARGV[entries_at + nlog])
  local files_at = entries_at + nlog + 1
  i = files_at + nfiles
  local kept = false
  if result_key ~= '' then
    kept = redis.call('GET', prefix .. ':sync:res:' .. result_key)
  end
  if kept then
    if record ~= '' then stale[record] = true end
    out[#out + 1] = kept
  else
    local ok = true
    if record ~= '' then
      local key = prefix .. ':sync:rec:' .. record
      local version = tonumber(redis.call('HGET', key, 'v') or '0')
      if stale[record] or version ~= expected then
        stale[record] = true
        ok = false
      elseif blob ~= '' then
        redis.call('HSET', key, 'v', version + 1, 'd', blob)
        if version == 0 then
          local colon = string.find(record, ':', 1, true)
          redis.call('ZADD', prefix .. ':sync:ids:' .. string.sub(record, 1, colon - 1), 0,
            string.sub(record, colon + 1))
        end
      end
    end
    if ok then
      if result_key ~= '' then
        redis.call('SET', prefix .. ':sync:res:' .. result_key, result, 'PX', ttl)
      end
      for j = entries_at, entries_at + nlog - 1 do
        local n = redis.call('INCR', log .. ':n')
        redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*', 'c', ARGV[j], 'n', n)
      end
      for j = files_at, files_at + nfiles - 1 do
        redis.call('SADD', prefix .. ':sync:file:' .. ARGV[j], record)
      end
      out[#out + 1] = 0
    else
      out[#out + 1] = -1
    end
  end
end
if minid ~= '' then
  redis.call('XTRIM', log, 'MINID', '~', minid)
end
return out
