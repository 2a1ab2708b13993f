-- LEASE: renew one member's lease and grow, shrink or re-assert all its allocations at once.
-- Atomic (one script), so the sum of allocations never exceeds a scope's cap by a grant:
-- growth comes only from what nobody holds; re-asserting slots really in use (used, claim)
-- can only block growth. Redis TIME is the only clock (ARGV[5] > 0 overrides it in tests).
--
-- KEYS: members (ZSET id -> expiry ms), tot (HASH scope -> sum of allocations),
--       held (HASH id|scope -> alloc, id|d|scope -> demand, id -> scope list),
--       dem (HASH scope -> sum of demands),
--       meta (HASH epoch, recover_until, reaped, contended|<scope> -> until ms)
-- ARGV: id, ttl_ms, window_ms, fresh (0|1), now_ms (0: TIME), reap_limit, idle_expire_ms,
--       then per scope: scope, cap, used, want, demand, claim
-- Reply: {now_ms, recovering (0|1), epoch, members, reaped,
--         then per scope: alloc, fair, overloaded (0|1), tot}
local members, tot, held, dem, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[1]
local ttl, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local fresh, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local reap_limit, idle_expire = tonumber(ARGV[6]), tonumber(ARGV[7])
local SEP = '\n'
if now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A Redis without meta (fresh, wiped, restarted empty) or a caller that saw a new server
-- (failover) opens the recovery window: nothing is granted, holders re-assert first.
local recover_until = tonumber(redis.call('HGET', meta, 'recover_until'))
-- The epoch changes with every window; a wiped Redis starts it at its TIME, so it never
-- repeats an epoch an instance saw before the wipe.
if recover_until == nil or fresh == 1 then
  recover_until = now + window
  redis.call('HSET', meta, 'recover_until', recover_until)
  if redis.call('HEXISTS', meta, 'epoch') == 0 then
    redis.call('HSET', meta, 'epoch', now)
  else
    redis.call('HINCRBY', meta, 'epoch', 1)
  end
end
local recovering = now < recover_until and 1 or 0
local epoch = tonumber(redis.call('HGET', meta, 'epoch'))

local function split(text)
  local out = {}
  if not text then return out end
  for item in string.gmatch(text, '([^' .. SEP .. ']+)') do out[#out + 1] = item end
  return out
end

-- Give back everything one member holds in one scope.
local function release(member, scope)
  local a = tonumber(redis.call('HGET', held, member .. '|' .. scope)) or 0
  local d = tonumber(redis.call('HGET', held, member .. '|d|' .. scope)) or 0
  if a ~= 0 then redis.call('HINCRBY', tot, scope, -a) end
  if d ~= 0 then redis.call('HINCRBY', dem, scope, -d) end
  redis.call('HDEL', held, member .. '|' .. scope, member .. '|d|' .. scope)
end

-- Reap members whose lease expired (bounded work per call; the next call reaps more).
local dead = redis.call('ZRANGEBYSCORE', members, '-inf', '(' .. now, 'LIMIT', 0, reap_limit)
for _, member in ipairs(dead) do
  if member ~= id then
    for _, scope in ipairs(split(redis.call('HGET', held, member))) do release(member, scope) end
    redis.call('HDEL', held, member)
    redis.call('ZREM', members, member)
    redis.call('HINCRBY', meta, 'reaped', 1)
  end
end

redis.call('ZADD', members, now + ttl, id)

-- Scopes this member held before but no longer names (a reload removed a rule): released.
local names, listed = {}, {}
for i = 8, #ARGV, 6 do names[#names + 1] = ARGV[i]; listed[ARGV[i]] = true end
for _, scope in ipairs(split(redis.call('HGET', held, id))) do
  if not listed[scope] then release(id, scope) end
end
redis.call('HSET', held, id, table.concat(names, SEP))

local reply = {now, recovering, epoch, redis.call('ZCARD', members), #dead}
for i = 8, #ARGV, 6 do
  local scope = ARGV[i]
  local cap, used, want = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local demand, claim = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local akey, dkey = id .. '|' .. scope, id .. '|d|' .. scope
  local stored = tonumber(redis.call('HGET', held, akey)) or 0
  local cur = math.max(stored, used, claim)
  local total = (tonumber(redis.call('HGET', tot, scope)) or 0) - stored + cur
  local dsum = (tonumber(redis.call('HGET', dem, scope)) or 0)
    - (tonumber(redis.call('HGET', held, dkey)) or 0) + demand
  local fair = cap
  if dsum > 0 then fair = math.ceil(cap * demand / dsum) end
  -- Overloaded: the demands alone fill the cap, or lately a growth was cut short for lack
  -- of free slots (the headrooms fill it: idle slots held by quiet members while busy ones
  -- refuse). Either way every member is held to its demand share until it passes.
  local cfield = 'contended|' .. scope
  local contended = now < (tonumber(redis.call('HGET', meta, cfield)) or 0)
  local overloaded = ((dsum >= cap or contended) and cap > 0) and 1 or 0
  local alloc
  if want <= cur then
    alloc = math.max(want, used)  -- a shrink is taken as asked, never below what is in use
  elseif recovering == 1 then
    alloc = cur
  else
    local limit = want
    if overloaded == 1 then limit = math.min(want, math.max(fair, cur)) end
    local grow = math.max(0, math.min(limit - cur, cap - total))
    if grow < limit - cur then
      redis.call('HSET', meta, cfield, now + ttl)
      overloaded = (cap > 0) and 1 or 0
    end
    alloc = cur + grow
  end
  total = total - cur + alloc
  redis.call('HSET', held, akey, alloc, dkey, demand)
  redis.call('HSET', tot, scope, total)
  redis.call('HSET', dem, scope, dsum)
  reply[#reply + 1] = alloc
  reply[#reply + 1] = fair
  reply[#reply + 1] = overloaded
  reply[#reply + 1] = total
end

-- An abandoned cluster's keys expire; a live one refreshes them on every call.
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, idle_expire) end
return reply
