-- ARGV: prefix, kind, schema, requirements, after key, how many, scan cap
-- Returns: exhausted ('1' or '0'), last key looked at, then key, version, body per match.
local kind = ARGV[2]
local keys, last, done = scan(kind, cjson.decode(ARGV[4]), cjson.decode(ARGV[3]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]))
local out = {done and '1' or '0', last or ''}
for _, key in ipairs(keys) do
  local r = redis.call('HMGET', rkey(kind, key), 'v', 'b')
  out[#out + 1] = key
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
end
return out
