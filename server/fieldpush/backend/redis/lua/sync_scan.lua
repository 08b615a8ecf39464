-- Records of one type after an id (RecordStore.scan).
-- KEYS[1] the type's id index. ARGV: record key prefix, after rid ("" = first), count.
-- Returns [rid, version, blob, ...].
local start = ARGV[2] == '' and '-' or '(' .. ARGV[2]
local out = {}
for _, rid in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, ARGV[3])) do
  local record = redis.call('HMGET', ARGV[1] .. rid, 'v', 'd')
  out[#out + 1] = rid
  out[#out + 1] = record[1]
  out[#out + 1] = record[2]
end
return out
