-- One waiting room's shared line: one call per instance and sync (docs/CLUSTER.md,
-- "The waiting room across instances"). Redis TIME is the only clock (ARGV[21] overrides
-- it in tests). Everything is an absolute value (re-asserted on every call), so a lost
-- reply, a restart or a failover heals on the next call.
-- KEYS: 1 the room hash, 2 the members hash (instance id -> "brake alive rate boost ms").
-- ARGV: 1 id, 2 asserted (0/1), 3 epoch, 4 claim next, 5 claim issued, 6 claim served,
--   7 claim prequeue, 8 claim state, 9 set state ('' = none), 10 block wanted, 11 direct
--   high, 12 freeze (0/1), 13 reset from epoch (-1 = none), 14 brake, 15 alive,
--   16 admit rate, 17 ghost boost, 18 recovery window ms, 19 stale ms, 20 max gap ms,
--   21 now override ms ('' = TIME), 22 fresh (0/1), 23 key ttl ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[21] ~= '' then now = tonumber(ARGV[21]) end
local room, members, id = KEYS[1], KEYS[2], ARGV[1]
local asserted, epoch = ARGV[2] == '1', tonumber(ARGV[3])
local c_next, c_issued, c_served = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local c_preq = tonumber(ARGV[7])
local f = redis.call('HMGET', room, 'epoch', 'next', 'issued', 'served', 'stamp', 'state',
  'preq', 'recover_until')
local cur = tonumber(f[1])
local nxt, issued, served = tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
local stamp, state, preq, recover = tonumber(f[5]), f[6], tonumber(f[7]), tonumber(f[8])

if cur == nil or (asserted and epoch > cur) then
  -- A fresh or wiped Redis (or a newer line re-asserted after one): the caller's counters,
  -- and a recovery window in which no block is granted while the others re-assert theirs.
  cur, nxt, issued = epoch, c_next, c_issued
  served, preq, stamp, state = math.min(c_served, c_issued), c_preq, now, ARGV[8]
  recover = now + tonumber(ARGV[18])
elseif asserted and epoch == cur then
  nxt, issued = math.max(nxt, c_next), math.max(issued, c_issued)
  served = math.max(served, math.min(c_served, issued))
  if preq < 0 and c_preq >= 0 then preq = c_preq end
end
if ARGV[22] == '1' then recover = now + tonumber(ARGV[18]) end
if tonumber(ARGV[13]) == cur then  -- reset: a new event, an empty line
  cur, nxt, issued, served, preq, stamp = cur + 1, 0, 0, 0, -1, now
end
if ARGV[9] ~= '' then state = ARGV[9] end
local mine = epoch == cur
local direct = tonumber(ARGV[11])
if mine and direct > 0 then
  issued = math.max(issued, direct)
  served = math.max(served, math.min(issued, direct))
end
if ARGV[12] == '1' and preq < 0 then preq = issued end

-- The speed: the most braked instance, the claims seen anywhere (each instance sees the
-- share of passed places claimed through it: their sum is the cluster's alive share).
if mine then
  redis.call('HSET', members, id, ARGV[14] .. ' ' .. ARGV[15] .. ' ' .. ARGV[16] .. ' ' ..
    ARGV[17] .. ' ' .. now)
end
local brake, alive, rate, boost = 1.0, 0.0, nil, nil
local all = redis.call('HGETALL', members)
for i = 1, #all, 2 do
  local b, a, r, g, s = string.match(all[i + 1], '(%S+) (%S+) (%S+) (%S+) (%S+)')
  if s == nil or now - tonumber(s) > tonumber(ARGV[19]) then
    redis.call('HDEL', members, all[i])
  else
    brake, alive = math.min(brake, tonumber(b)), alive + tonumber(a)
    rate = rate and math.min(rate, tonumber(r)) or tonumber(r)
    boost = boost and math.min(boost, tonumber(g)) or tonumber(g)
  end
end
local speed = 0.0
if rate ~= nil then
  speed = rate * brake / math.max(math.min(alive, 1.0), 1.0 / boost)
end
local gap = math.min(now - stamp, tonumber(ARGV[20]))
if gap > 0 then
  served = math.min(issued, served + speed * gap / 1000.0)
  stamp = now
end

nxt = math.max(nxt, issued)
local first, last = 0, 0
local want = tonumber(ARGV[10])
if mine and want > 0 and now >= recover then
  first, last = nxt + 1, nxt + want
  nxt = last
end
redis.call('HSET', room, 'epoch', cur, 'next', nxt, 'issued', issued, 'served',
  tostring(served), 'stamp', stamp, 'state', state, 'preq', preq, 'recover_until', recover)
redis.call('PEXPIRE', room, ARGV[23])
redis.call('PEXPIRE', members, ARGV[23])
local recovering = 0
if now < recover then recovering = 1 end
return {cur, nxt, issued, tostring(served), state, preq, first, last, recovering, now,
  tostring(speed)}
