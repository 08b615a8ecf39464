-- Read the change log after a position (RecordStore.read_log).
-- KEYS[1] the log stream. ARGV: after ("<ms>-<seq>"), count.
-- Returns [expired (1: entries after it were trimmed), id, entry, id, entry, ...].
local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local after = ARGV[1]
local out = {0}
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for k = 1, #info, 2 do
    if info[k] == 'max-deleted-entry-id' and before(after, info[k + 1]) then
      out[1] = 1
      after = info[k + 1]
    end
  end
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', ARGV[2])) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
