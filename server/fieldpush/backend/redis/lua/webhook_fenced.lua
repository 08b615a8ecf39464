-- Set or delete a key if the caller holds the webhook lease with its fencing
-- token (WebhookState.advance, WebhookState.release).
--
-- KEYS[1]  the lease, a string '<token> <holder>'
-- KEYS[2]  the key to change: the cursor (set) or the lease itself (delete)
-- ARGV[1]  '<token> <holder>' as the caller was granted it
-- ARGV[2]  the cursor to store; absent: delete KEYS[2]
-- Returns 1 when changed, 0 when the lease is not the caller's.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] then
  redis.call('SET', KEYS[2], ARGV[2])
else
  redis.call('DEL', KEYS[2])
end
return 1
