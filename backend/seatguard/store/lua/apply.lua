-- Compare-and-set of one user's presence snapshot: the write wins only if nobody wrote
-- since the caller read it. Every decision is made by the pure core in the node; this
-- script makes its write atomic and stamps it with the Redis server's clock.
-- KEYS[1]  the user's snapshot hash {site:user}: field t = write token, d = snapshot
-- ARGV[1]  the token the caller read the snapshot with ('' when there was none)
-- ARGV[2]  the new token
-- ARGV[3]  the new snapshot ('' deletes it: the user has nothing left)
-- ARGV[4]  time to live of the snapshot, in ms
-- Returns {1, seconds, microseconds} when written, or
--         {0, seconds, microseconds, token, snapshot} when another write came first.
local time = redis.call('TIME')
local current = redis.call('HGET', KEYS[1], 't') or ''
if current ~= ARGV[1] then
  return {0, time[1], time[2], current, redis.call('HGET', KEYS[1], 'd') or ''}
end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 't', ARGV[2], 'd', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {1, time[1], time[2]}
