-- A user's pending tracked events, oldest first, in one round trip
-- (pending_events of pending_events.lua).
--
-- ARGV[1]  key prefix, ARGV[2] user

return pending_events(ARGV[1], ARGV[2])
