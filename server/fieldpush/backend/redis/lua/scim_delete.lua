-- Remove one SCIM user resource (Directory.delete).
-- KEYS: the entry's hash, the user key -> id hash, the id index. ARGV: id, expected
-- version ('' = any). Returns 1 (removed) or 0 (absent, or at another version).
local entry = redis.call('HMGET', KEYS[1], 'v', 'k')
if not entry[1] or (ARGV[2] ~= '' and entry[1] ~= ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], entry[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
