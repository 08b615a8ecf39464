-- Read the change log after a position (RecordStore.read_log).
-- KEYS[1] the log stream. ARGV: after id, after number (the n of that entry), count.
-- Entries carry fields c (the entry) and n (its number: 1, 2, ... without holes),
-- so a gap between the reader's number and the oldest retained one means the
-- log was trimmed past the reader (Redis keeps no record of trimmed ids).
-- Returns [expired (1/0), id, n, entry, id, n, entry, ...].
local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local out = {0}
local start = '(' .. ARGV[1]
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if first and tonumber(first[2][4]) > tonumber(ARGV[2]) + 1 and before(ARGV[1], first[1]) then
  out[1] = 1
  start = '-'
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[3])) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][4]
  out[#out + 1] = entry[2][2]
end
return out
