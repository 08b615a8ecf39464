-- Read the change log after a position (RecordStore.read_log).
-- KEYS[1] the log stream. ARGV: the position's epoch ("" for the empty log's),
-- entry id and number (the n of that entry), count (0: no entries, only the
-- expired flag).
-- Entries carry fields c (the entry) and n (its number: 1, 2, ... without holes),
-- so a gap between the reader's number and the oldest retained one means the
-- log was trimmed past the reader (Redis keeps no record of trimmed ids); a
-- different epoch means the log itself was lost (a flushed or new Redis).
-- Returns [expired (1/0), epoch, id, n, entry, id, n, entry, ...].
local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local epoch = redis.call('GET', KEYS[1] .. ':e') or ''
local after, number = ARGV[2], tonumber(ARGV[3])
local out = {0, epoch}
local start = '(' .. after
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local lost = ARGV[1] ~= epoch and not (ARGV[1] == '' and number == 0)
if lost or (first and tonumber(first[2][4]) > number + 1 and before(after, first[1])) then
  out[1] = 1
  start = '-'
end
if tonumber(ARGV[4]) <= 0 then
  return out  -- no entries asked for (XRANGE answers COUNT 0 with a nil reply)
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[4])) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][4]
  out[#out + 1] = entry[2][2]
end
return out
