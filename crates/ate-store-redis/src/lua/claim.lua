-- ARGV: prefix, worker schema, requirements, actor atespace, actor id, assignment JSON, scan cap
-- Returns {} when no free worker matches, else key, version, body of the actor's worker.
local kind = 'workers'
local schema = cjson.decode(ARGV[2])
local ns, id, cap = ARGV[4], ARGV[5], tonumber(ARGV[7])
local function reply(key)
  local r = redis.call('HMGET', rkey(kind, key), 'v', 'b')
  return {key, r[1], r[2]}
end
-- The worker this actor already holds, if any: an actor never gets two.
local bound = scan(kind, {{'actor_atespace', '=', ns}, {'actor_id', '=', id}}, schema, nil, 1, cap)
if #bound > 0 then return reply(bound[1]) end
local found = scan(kind, cjson.decode(ARGV[3]), schema, nil, 1, cap)
if #found == 0 then return {} end
local key = found[1]
local rk = rkey(kind, key)
local r = redis.call('HMGET', rk, 'v', 'b', 'e')
local body = r[2]
if string.find(body, '"assignment"', 1, true) then return redis.error_reply('worker ' .. key .. ' is free but its body has an assignment') end
local entries = cjson.decode(r[3])
index_rem(ixkeys(kind, entries, schema), key)
for _, e in ipairs(entries) do
  if e[1] == 'actor_id' then e[2] = id end
  if e[1] == 'actor_atespace' then e[2] = ns end
end
local nv = tonumber(r[1]) + 1
local nb = string.sub(body, 1, -2) .. ',"assignment":' .. ARGV[6] .. '}'
redis.call('HSET', rk, 'v', nv, 'b', nb, 'e', cjson.encode(entries))
index_add(ixkeys(kind, entries, schema), key)
publish(kind, 'u', key, nv, nb)
return {key, nv, nb}
