-- Store one SCIM user resource by compare-and-set, keeping user keys unique (Directory.put).
-- KEYS: the entry's hash, the user key -> id hash, the id index (sorted set).
-- ARGV: id, user name, user key, expected version (0 = must not exist), created ms,
--       modified ms, document.
-- Returns {'ok', version, created ms}, {'version', current version} or {'taken', holder id}.
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if version ~= tonumber(ARGV[4]) then return {'version', version} end
local holder = redis.call('HGET', KEYS[2], ARGV[3])
if holder and holder ~= ARGV[1] then return {'taken', holder} end
local created = ARGV[5]
if version > 0 then
  local old = redis.call('HMGET', KEYS[1], 'k', 'c')
  redis.call('HDEL', KEYS[2], old[1])
  created = old[2]
else
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
redis.call('HSET', KEYS[1], 'n', ARGV[2], 'k', ARGV[3], 'v', version + 1, 'c', created,
  'm', ARGV[6], 'd', ARGV[7])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return {'ok', version + 1, created}
