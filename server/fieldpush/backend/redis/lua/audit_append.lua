-- Append chained audit entries if the trail's head is still the one the node
-- chained them after (a compare-and-set; AuditLog.append).
--
-- ARGV[1]  the trail, a list of entry lines (never trimmed)
-- ARGV[2]  the head, a string '<size> <hash>' (absent: '0 <64 zeros>')
-- ARGV[3]  the head the entries were chained after, '<size> <hash>'
-- ARGV[4]  the new head, '<size> <hash>'
-- ARGV[5..] the entry lines, in seq order
-- Returns {1} when stored, else {0, current head}: the node re-chains.

local head = redis.call('GET', ARGV[2]) or ('0 ' .. string.rep('0', 64))
if head ~= ARGV[3] then
  return {0, head}
end
local size = tonumber(string.match(head, '^(%d+) '))
if redis.call('LLEN', ARGV[1]) ~= size then
  return redis.error_reply('audit trail length differs from its head')
end
for i = 5, #ARGV, 1000 do
  redis.call('RPUSH', ARGV[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('SET', ARGV[2], ARGV[4])
return {1}
