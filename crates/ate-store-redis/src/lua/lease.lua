-- ARGV: prefix, 'acquire' | 'release' | 'retire', key, owner, ttl ms
-- The server's clock decides expiry, so replicas with skewed clocks agree.
local lk = P .. 'lease:' .. ARGV[3]
local owner = ARGV[4]
local cur = redis.call('HMGET', lk, 'o', 'x', 'g')
if ARGV[2] == 'release' then
  if cur[1] ~= owner then return {'notheld'} end
  redis.call('HSET', lk, 'o', '', 'x', 0)
  return {'ok'}
end
if ARGV[2] == 'retire' then
  if cur[1] ~= owner then return {'notheld'} end
  redis.call('DEL', lk)
  return {'ok'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gen
if not cur[1] then
  gen = 1
elseif cur[1] == owner then
  gen = tonumber(cur[3])
elseif cur[1] == '' or tonumber(cur[2]) <= now then
  gen = tonumber(cur[3]) + 1
else
  return {'held'}
end
local exp = now + tonumber(ARGV[5])
redis.call('HSET', lk, 'o', owner, 'x', exp, 'g', gen)
return {'ok', exp, gen}
