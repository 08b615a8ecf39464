-- A channel's newest position and the events after a position, in one step
-- (read_history of history.lua).
--
-- KEYS[1]  meta hash, KEYS[2] stream
-- ARGV[1]  candidate epoch, ARGV[2] meta TTL (ms), ARGV[3] stream id to read
--          after (exclusive) or '', ARGV[4] maximum entries, ARGV[5] the epoch
--          of that position

return read_history(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
