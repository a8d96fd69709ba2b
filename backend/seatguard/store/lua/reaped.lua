-- Forget a dead node once its users were released, unless it came back meanwhile.
-- KEYS[1]  sorted set of nodes by lease expiry (ms, Redis clock)
-- KEYS[2]  the dead node's set of users
-- KEYS[3]  the claim on reaping it
-- ARGV[1]  the dead node's id
-- ARGV[2]  the id of the node that reaped it (the claim's holder)
-- Returns 1 when forgotten, 0 when it renewed its lease or the claim was lost.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if lease >= now or redis.call('GET', KEYS[3]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
