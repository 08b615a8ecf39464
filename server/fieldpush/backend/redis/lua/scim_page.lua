-- SCIM user resources in id order (Directory.page), or the one of a user key
-- (Directory.by_user_key).
-- KEYS: the id index, the user key -> id hash. ARGV: entry key prefix, then either
-- 'page', offset, limit or 'key', user key.
-- Returns [id, user name, user key, version, created ms, modified ms, document, ...].
local ids
if ARGV[2] == 'page' then
  local first = tonumber(ARGV[3])
  ids = redis.call('ZRANGE', KEYS[1], first, first + tonumber(ARGV[4]) - 1)
else
  local id = redis.call('HGET', KEYS[2], ARGV[3])
  ids = id and {id} or {}
end
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HMGET', ARGV[1] .. id, 'n', 'k', 'v', 'c', 'm', 'd')
  if entry[3] then
    out[#out + 1] = id
    for i = 1, 6 do out[#out + 1] = entry[i] end
  end
end
return out
