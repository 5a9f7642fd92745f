-- Shared by every script. ARGV[1] is the key prefix; it carries a hash tag, so all keys of
-- one store live in one cluster slot.
local P = ARGV[1]

local function rkey(kind, key) return P .. 'r:' .. kind .. ':' .. key end

-- The sorted sets (score 0, members ordered by key) a record belongs to: every key of the
-- kind, one set per field value, one per compound index of single-valued fields.
local function ixkeys(kind, entries, schema)
  local keys = {P .. 'all:' .. kind}
  local single = {}
  for _, e in ipairs(entries) do
    keys[#keys + 1] = P .. 'ix:' .. kind .. ':' .. e[1] .. ':' .. e[2]
    if not schema.multi[e[1]] then single[e[1]] = e[2] end
  end
  for _, g in ipairs(schema.compound) do
    local vals = {}
    for i, f in ipairs(g) do vals[i] = single[f] or '' end
    keys[#keys + 1] = P .. 'cx:' .. kind .. ':' .. table.concat(g, ',') .. ':' .. table.concat(vals, '\31')
  end
  return keys
end

local function index_add(keys, key)
  for _, k in ipairs(keys) do redis.call('ZADD', k, 0, key) end
end

local function index_rem(keys, key)
  for _, k in ipairs(keys) do redis.call('ZREM', k, key) end
end

-- The body an event carries: none for a secret kind (the schema says which), whose
-- watchers read the record instead, so the channel never carries a secret.
local function event_body(schema, body)
  if schema.secret then return nil end
  return body
end

local function publish(kind, op, key, version, body)
  local event = {kind = kind, op = op, key = key, version = version}
  if body then event.body = body end
  redis.call('PUBLISH', P .. 'events', cjson.encode(event))
end

-- Whether a record's index entries satisfy every requirement {field, '=' | '!', value}.
local function matches(entries, reqs, schema)
  local have = {}
  for _, e in ipairs(entries) do
    have[e[1]] = have[e[1]] or {}
    have[e[1]][e[2]] = true
  end
  for _, r in ipairs(reqs) do
    local vals = have[r[1]]
    local hit
    if schema.multi[r[1]] and r[3] == '' then
      hit = (vals == nil)
    else
      hit = (vals ~= nil and vals[r[3]] == true)
    end
    if (r[2] == '=') ~= hit then return false end
  end
  return true
end

-- The smallest index that every match must be in.
local function driver(kind, reqs, schema)
  local best, bestn = P .. 'all:' .. kind, nil
  local eq = {}
  for _, r in ipairs(reqs) do
    if r[2] == '=' then
      if not (schema.multi[r[1]] and r[3] == '') then
        local k = P .. 'ix:' .. kind .. ':' .. r[1] .. ':' .. r[3]
        local n = redis.call('ZCARD', k)
        if bestn == nil or n < bestn then best, bestn = k, n end
      end
      if not schema.multi[r[1]] then eq[r[1]] = r[3] end
    end
  end
  for _, g in ipairs(schema.compound) do
    local vals, ok = {}, true
    for i, f in ipairs(g) do
      if eq[f] == nil then ok = false break end
      vals[i] = eq[f]
    end
    if ok then
      local k = P .. 'cx:' .. kind .. ':' .. table.concat(g, ',') .. ':' .. table.concat(vals, '\31')
      local n = redis.call('ZCARD', k)
      if bestn == nil or n < bestn then best, bestn = k, n end
    end
  end
  return best
end

-- Walks the driving index in key order after `after`, returning up to `want` matching keys,
-- the last key looked at, and whether the index was exhausted. Stops after `cap` keys.
local function scan(kind, reqs, schema, after, want, cap)
  local drive = driver(kind, reqs, schema)
  local out, last, seen = {}, nil, 0
  local from = '-'
  if after and after ~= '' then from = '(' .. after end
  while true do
    local batch = redis.call('ZRANGEBYLEX', drive, from, '+', 'LIMIT', 0, 256)
    if #batch == 0 then return out, last, true end
    for _, key in ipairs(batch) do
      seen = seen + 1
      last = key
      local e = redis.call('HGET', rkey(kind, key), 'e')
      if e and matches(cjson.decode(e), reqs, schema) then
        out[#out + 1] = key
        if #out >= want then return out, last, false end
      end
      if seen >= cap then return out, last, false end
    end
    from = '(' .. last
  end
end
