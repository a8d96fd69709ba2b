-- Renew this node's lease and list the nodes whose lease ran out.
-- KEYS[1]  sorted set of nodes by lease expiry (ms, Redis clock)
-- KEYS[2]  this node's set of users (keys of users whose tabs it held)
-- ARGV[1]  this node's id
-- ARGV[2]  the lease, in ms
-- ARGV[3]  time to live of both keys, in ms
-- Returns {seconds, microseconds, lapsed, dead node, dead node, ...}: `lapsed` is 1 when
-- this node's own lease had run out (others may have released its tabs meanwhile).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local mine = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local reply = {time[1], time[2], mine < now and 1 or 0}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1)) do
  reply[#reply + 1] = node
end
return reply
