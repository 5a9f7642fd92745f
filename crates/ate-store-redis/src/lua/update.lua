-- ARGV: prefix, kind, key, body, entries, schema, expected version
local kind, key, body = ARGV[2], ARGV[3], ARGV[4]
local schema = cjson.decode(ARGV[6])
local rk = rkey(kind, key)
local v = redis.call('HGET', rk, 'v')
if not v then return {'missing'} end
if tonumber(v) ~= tonumber(ARGV[7]) then return {'conflict'} end
index_rem(ixkeys(kind, cjson.decode(redis.call('HGET', rk, 'e')), schema), key)
local nv = tonumber(v) + 1
redis.call('HSET', rk, 'v', nv, 'b', body, 'e', ARGV[5])
index_add(ixkeys(kind, cjson.decode(ARGV[5]), schema), key)
publish(kind, 'u', key, nv, event_body(schema, body))
return {'ok'}
