-- ARGV: prefix, kind, key, expected version ('' for any), children [[kind, field]], schema
local kind, key = ARGV[2], ARGV[3]
local rk = rkey(kind, key)
local v = redis.call('HGET', rk, 'v')
if not v then return {'missing'} end
if ARGV[4] ~= '' and tonumber(v) ~= tonumber(ARGV[4]) then return {'conflict'} end
for _, c in ipairs(cjson.decode(ARGV[5])) do
  if redis.call('ZCARD', P .. 'ix:' .. c[1] .. ':' .. c[2] .. ':' .. key) > 0 then return {'notempty'} end
end
index_rem(ixkeys(kind, cjson.decode(redis.call('HGET', rk, 'e')), cjson.decode(ARGV[6])), key)
redis.call('DEL', rk)
publish(kind, 'd', key, tonumber(v), nil)
return {'ok'}
