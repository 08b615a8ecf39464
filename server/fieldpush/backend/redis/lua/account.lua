-- Apply one change to a user's access state, store it and announce the new
-- state on the access control channel; one atomic step (Accounts.change).
--
-- ARGV[1]  the accounts hash (user -> state JSON)
-- ARGV[2]  the access control pub/sub channel
-- ARGV[3]  the user
-- ARGV[4]  the change, JSON {at, by, active?, tokens_valid_after, role?, teams?}:
--          a key that is absent keeps the field; role/teams null clear it;
--          tokens_valid_after only ever rises
-- Returns the new state's JSON (announced as 'a <json>').

local current = redis.call('HGET', ARGV[1], ARGV[3])
local state
if current then
  state = cjson.decode(current)
else
  state = {user = ARGV[3], active = true, tokens_valid_after = 0}
end
local change = cjson.decode(ARGV[4])
if change.active ~= nil then state.active = change.active end
if change.tokens_valid_after > state.tokens_valid_after then
  state.tokens_valid_after = change.tokens_valid_after
end
if change.role ~= nil then state.role = change.role end
if change.teams ~= nil then state.teams = change.teams end
state.changed_at = change.at
state.changed_by = change.by
local encoded = cjson.encode(state)
redis.call('HSET', ARGV[1], ARGV[3], encoded)
redis.call('PUBLISH', ARGV[2], 'a ' .. encoded)
return encoded
