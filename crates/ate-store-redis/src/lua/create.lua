-- ARGV: prefix, kind, key, body, entries, schema, parent kind, parent key
local kind, key, body = ARGV[2], ARGV[3], ARGV[4]
local schema = cjson.decode(ARGV[6])
if ARGV[7] ~= '' and redis.call('EXISTS', rkey(ARGV[7], ARGV[8])) == 0 then return {'parent'} end
local rk = rkey(kind, key)
if redis.call('EXISTS', rk) == 1 then return {'exists'} end
redis.call('HSET', rk, 'v', 1, 'b', body, 'e', ARGV[5])
index_add(ixkeys(kind, cjson.decode(ARGV[5]), schema), key)
publish(kind, 'c', key, 1, event_body(schema, body))
return {'ok'}
