"""The Lua scripts behind :class:`tether.state.redis.RedisState`: one atomic round trip per decision.

They mirror :class:`tether.state.memory.MemoryState` step for step (the same expressions in the same order, so
the same doubles come out) and read the time from Redis (``TIME``), so every process shares one clock.

Keys of one integration ``K``, named ``{prefix}{K}:suffix``, and of an endpoint group ``G`` inside it, named
``{prefix}{K}:G:suffix`` (``K`` is the hash tag, so an integration's keys and its groups' share one cluster
slot, as a script that touches both requires), each with a TTL so an idle integration leaves nothing behind:

- ``tat`` (string): the GCRA theoretical arrival time, in Redis seconds. Expires 1 s after the TAT, when it
  decides the same as no TAT.
- ``pause`` (string): until when every caller holds off. Expires 1 s after the pause ends.
- ``rate`` (string): the emission interval the API reported (a learned rate has burst 1), or the slowed-down
  one after a 429 that said nothing about the limit. Expires ``idle_ttl`` after the last report that carried
  it; a slow-down after ``SLOW_DOWN_FOR``.
- ``tokens`` (string): the token budget's TAT (GCRA with the whole budget as burst), moved on by the tokens
  each response used. Expires 1 s after the TAT.
- ``breaker`` (hash; absent means closed): ``state`` (``open`` or ``half_open``), ``until`` (end of open),
  ``out`` (probes handed out), ``lease`` (until when they are out: ``open_for`` after the last one; unanswered
  by then, new ones are handed out). Open: expires ``idle_ttl`` after ``until``; half-open: ``idle_ttl`` after
  ``lease``. Closing deletes it.
- ``window`` (hash): the breaker's per-second buckets, field = the second, value = ``"calls:failures"``;
  buckets older than the window are deleted as outcomes arrive. Expires ``ceil(window)`` + 2 s after the last
  outcome, when every bucket in it would be out of the window anyway.

A call touches one level (its integration) or two (the integration, then its endpoint group): the scripts take
each level's keys and arguments in turn (see :mod:`tether.state.base` for what each level keeps).

The admit script answers ``{code, seconds, probe, again}``: code 0 admitted (seconds = wait), 1 ``rate_limit``,
2 ``circuit_open``, 3 ``paused`` (seconds = retry_in). The report script answers the breaker's new state or nil.

Numbers cross the boundary as ``%.17g`` strings (Redis would truncate a Lua number reply to an integer, and Lua's
``tostring`` keeps only 14 digits). ``ARGV[1]`` is empty in production; tests may pass the time there to compare
decisions with ``MemoryState`` under a manual clock.
"""

from __future__ import annotations

__all__ = ["ADMIT", "REPORT"]

_COMMON = """
local function clock()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end
-- milliseconds until a moment, plus a second so the key outlives the moment it records (capped: an absurd pause
-- must still make a valid TTL)
local function ttl_ms(at, now) return math.min(math.ceil((at - now) * 1000) + 1000, 1e15) end
local now = clock()
-- seconds after start until a bucket with this TAT has room (GCRA); 1e-9: a burst's last slot can be off by 1e-16
local function reserved(tat, tolerance, start)
  if not tat or tat < start then return 0 end
  local r = tat - tolerance - start
  if r > 1e-9 then return r end
  return 0
end
"""

ADMIT = (
    _COMMON
    + """
-- KEYS per level: tat, pause, rate, breaker, tokens
-- ARGV: now|'', max_wait, idle_ttl_ms, levels; per level: interval (0: none configured), burst,
--       token interval (0: no token budget), token tolerance, breaker? (1|0), probes, open_for
local max_wait, idle, n = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local start = now
for i = 1, n do
  local paused = tonumber(redis.call('GET', KEYS[(i - 1) * 5 + 2]) or '0')
  if paused > start then start = paused end
end
local wait = start - now
if wait > max_wait then return {3, num(wait), 0} end

-- every level with a budget must have room: the attempt goes when the last of them does
local needs, intervals, tats = {}, {}, {}
for i = 1, n do
  local k, a = (i - 1) * 5, 4 + (i - 1) * 7
  local need = 0
  local interval, burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local learned = redis.call('GET', KEYS[k + 3])
  if learned then
    learned = tonumber(learned)
    if interval == 0 or learned > interval then interval, burst = learned, 1 end
  end
  intervals[i] = interval
  if interval > 0 then
    local tat = redis.call('GET', KEYS[k + 1])
    if tat then tats[i] = tonumber(tat) end
    need = math.max(need, reserved(tats[i], interval * (burst - 1), start))
  end
  if tonumber(ARGV[a + 3]) > 0 then
    local ttat = redis.call('GET', KEYS[k + 5])
    if ttat then need = math.max(need, reserved(tonumber(ttat), tonumber(ARGV[a + 4]), start)) end
  end
  needs[i] = need
end
local need = needs[1]
for i = 2, n do need = math.max(need, needs[i]) end
local room = max_wait - wait
if room < 0 then room = 0 end
if need > room then return {1, num(wait + need), 0} end
wait = wait + need

local probe = 0
for i = 1, n do
  local key, a = KEYS[(i - 1) * 5 + 4], 4 + (i - 1) * 7
  if ARGV[a + 5] == '1' then
    local b = redis.call('HMGET', key, 'state', 'until', 'out', 'lease')
    local state = b[1] or 'closed'
    if state ~= 'closed' then
      probe = 1
      local out = tonumber(b[3] or '0')
      if state == 'open' then
        local opened_until = tonumber(b[2])
        if now < opened_until then return {2, num(opened_until - now), 0} end
        out = 0
        redis.call('HSET', key, 'state', 'half_open', 'out', 0)
        redis.call('PEXPIRE', key, idle)
      end
      if out >= tonumber(ARGV[a + 6]) then
        local out_until = tonumber(b[4] or '0')
        if now < out_until then return {2, num(out_until - now), 0} end
        out = 0  -- the probes never reported back (their process died?): hand out new ones
      end
      local lease = now + tonumber(ARGV[a + 7])
      redis.call('HSET', key, 'state', 'half_open', 'out', int(out + 1), 'lease', num(lease))
      redis.call('PEXPIRE', key, int(ttl_ms(lease, now) + tonumber(idle)))
    end
  end
end

-- the group's budget is the later one: take only its slot now, the integration's when the call is about to go
local again = 0
if n == 2 and needs[2] > needs[1] then again = 1 end
local go = start + need
for i = 1 + again, n do
  local interval, tat = intervals[i], tats[i]
  if interval > 0 then
    local from = go
    if tat and tat >= go then from = tat end
    local new_tat = from + interval
    redis.call('SET', KEYS[(i - 1) * 5 + 1], num(new_tat), 'PX', int(ttl_ms(new_tat, now)))
  end
end
return {0, num(wait), probe, again}
"""
)

REPORT = (
    _COMMON
    + """
-- KEYS per level: pause, rate, breaker, window, tokens
-- ARGV: now|'', idle_ttl_ms, levels, outcome ('': none, '1': failure, '0': success), probe (1|0), pause,
--       learned interval (0: none), slow_down (1|0), slow-down factor, slow-down ms, tokens used, tokens remaining
--       ('': not said); per level: learns (1|0), interval (0: none configured), token interval (0: none),
--       token tolerance, breaker? (1|0), failure_ratio, window, min_calls, open_for
local idle, n = tonumber(ARGV[2]), tonumber(ARGV[3])

local function learn(k, a)
  local pause = tonumber(ARGV[6])
  if pause > 0 then
    local paused = now + pause
    local old = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
    if old > paused then paused = old end
    redis.call('SET', KEYS[k + 1], num(paused), 'PX', int(ttl_ms(paused, now)))
  end
  if tonumber(ARGV[7]) > 0 then
    redis.call('SET', KEYS[k + 2], ARGV[7], 'PX', idle)
  elseif ARGV[8] == '1' then
    local interval = tonumber(ARGV[a + 2])
    local learned = redis.call('GET', KEYS[k + 2])
    if learned then
      learned = tonumber(learned)
      if interval == 0 or learned > interval then interval = learned end
    end
    if interval > 0 then redis.call('SET', KEYS[k + 2], num(interval / tonumber(ARGV[9])), 'PX', ARGV[10]) end
  end
end

local function debit(k, a)
  local interval, tolerance = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local tat = redis.call('GET', KEYS[k + 5])
  if tat then tat = tonumber(tat) end
  local changed = false
  local used = tonumber(ARGV[11])
  if used > 0 then
    local from = now
    if tat and tat > now then from = tat end
    tat, changed = from + used * interval, true
  end
  if ARGV[12] ~= '' then
    -- room for exactly the tokens the API says are left
    local told = now + tolerance + interval - tonumber(ARGV[12]) * interval
    if not tat or told > tat then tat, changed = told, true end
  end
  if changed then redis.call('SET', KEYS[k + 5], num(tat), 'PX', int(ttl_ms(tat, now))) end
end

local function record(k, a)
  local failure = ARGV[4] == '1'
  local function trip()
    local opened_until = now + tonumber(ARGV[a + 9])
    redis.call('DEL', KEYS[k + 3], KEYS[k + 4])
    redis.call('HSET', KEYS[k + 3], 'state', 'open', 'until', num(opened_until), 'out', 0)
    redis.call('PEXPIRE', KEYS[k + 3], int(ttl_ms(opened_until, now) + idle))
    return 'open'
  end

  local state = redis.call('HGET', KEYS[k + 3], 'state') or 'closed'
  if state == 'half_open' then
    if ARGV[5] ~= '1' then return false end  -- admitted before the trip: proves nothing about recovery
    if failure then return trip() end
    redis.call('DEL', KEYS[k + 3], KEYS[k + 4])
    return 'closed'
  end
  if state == 'open' then return false end  -- a call admitted before the trip: no reopening, no extension

  local window = tonumber(ARGV[a + 7])
  local second = math.floor(now)
  local horizon = second - math.ceil(window)
  local buckets = redis.call('HGETALL', KEYS[k + 4])
  local calls, failures, here_calls, here_failures = 0, 0, 0, 0
  local stale = {}
  for i = 1, #buckets, 2 do
    local at = tonumber(buckets[i])
    if at <= horizon then
      stale[#stale + 1] = buckets[i]
    else
      local c, f = string.match(buckets[i + 1], '^(%d+):(%d+)$')
      c, f = tonumber(c), tonumber(f)
      calls, failures = calls + c, failures + f
      if at == second then here_calls, here_failures = c, f end
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[k + 4], unpack(stale)) end
  local failed = 0
  if failure then failed = 1 end
  calls, failures = calls + 1, failures + failed
  redis.call('HSET', KEYS[k + 4], int(second), (here_calls + 1) .. ':' .. (here_failures + failed))
  redis.call('PEXPIRE', KEYS[k + 4], int(math.ceil(window) * 1000 + 2000))
  if failure and calls >= tonumber(ARGV[a + 8]) and failures / calls >= tonumber(ARGV[a + 6]) then return trip() end
  return false
end

local result = false
for i = 1, n do
  local k, a = (i - 1) * 5, 12 + (i - 1) * 9
  if ARGV[a + 1] == '1' then learn(k, a) end
  if tonumber(ARGV[a + 3]) > 0 then debit(k, a) end
  if ARGV[4] ~= '' and ARGV[a + 5] == '1' then
    local changed = record(k, a)
    if changed then result = changed end
  end
end
return result
"""
)
