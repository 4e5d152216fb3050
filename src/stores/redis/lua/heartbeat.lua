--[[
heartbeat.lua: marks a reporter (a factory, for a quorum) active and counts the active ones
(Store.heartbeat). One sorted set for the whole prefix, scored by when each member stops counting,
in the server's time; members past their score are removed on the way.

KEYS[1]   the reporters' sorted set (keys.ts reportersKey)
ARGV      reporter id, ttlMs, milliseconds added to the server's TIME (0; tests move the clock)
Returns   the number of active reporters, this one included
Errors    CIRCUITRY_BADARG <what>
]]

local key = KEYS[1]
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local offset = tonumber(ARGV[3])
if type(id) ~= 'string' or #id == 0 or #id > 64 or not string.find(id, '^[%w_%.%-]+$') then
  error({ err = 'CIRCUITRY_BADARG reporter' })
end
if ttl == nil or ttl < 1 or offset == nil then
  error({ err = 'CIRCUITRY_BADARG ttl' })
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + offset
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
redis.call('ZADD', key, string.format('%d', now + ttl), id)
redis.call('PEXPIRE', key, string.format('%d', math.ceil(ttl)))
return redis.call('ZCARD', key)
