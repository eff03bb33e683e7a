"""The Lua scripts behind :class:`tether.state.redis.RedisState`: one atomic round trip per decision.

They mirror :class:`tether.state.memory.MemoryState` step for step (the same expressions in the same order, so
the same doubles come out) and read the time from Redis (``TIME``), so every process shares one clock.

Keys of one integration ``K``, named ``{prefix}{K}:suffix`` (``K`` is the hash tag, so all of them share one
cluster slot as a script requires), each with a TTL so an idle integration leaves nothing behind:

- ``tat`` (string): the GCRA theoretical arrival time, in Redis seconds. Expires 1 s after the TAT, when it
  decides the same as no TAT.
- ``pause`` (string): until when every caller holds off. Expires 1 s after the pause ends.
- ``rate`` (string): the emission interval the API reported (a learned rate has burst 1). Expires ``idle_ttl``
  after the last report that carried it.
- ``breaker`` (hash; absent means closed): ``state`` (``open`` or ``half_open``), ``until`` (end of open),
  ``out`` (probes handed out), ``lease`` (until when they are out: ``open_for`` after the last one; unanswered
  by then, new ones are handed out). Open: expires ``idle_ttl`` after ``until``; half-open: ``idle_ttl`` after
  ``lease``. Closing deletes it.
- ``window`` (hash): the breaker's per-second buckets, field = the second, value = ``"calls:failures"``;
  buckets older than the window are deleted as outcomes arrive. Expires ``ceil(window)`` + 2 s after the last
  outcome, when every bucket in it would be out of the window anyway.

The admit script answers ``{code, seconds, probe}``: code 0 admitted (seconds = wait), 1 ``rate_limit``,
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
"""

ADMIT = (
    _COMMON
    + """
-- KEYS: tat, pause, rate, breaker
-- ARGV: now|'', interval (0: none configured), burst, max_wait, breaker? (1|0), probes, idle_ttl_ms, open_for
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = now
if paused > now then start = paused end
local wait = start - now
local max_wait = tonumber(ARGV[4])
if wait > max_wait then return {3, num(wait), 0} end

local interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local learned = redis.call('GET', KEYS[3])
if learned then
  learned = tonumber(learned)
  if interval == 0 or learned > interval then interval, burst = learned, 1 end
end

local tat = redis.call('GET', KEYS[1])
if tat then tat = tonumber(tat) end
local new_tat = false
if interval > 0 then
  local room = max_wait - wait
  if room < 0 then room = 0 end
  local from, reserved = start, 0
  if tat and tat >= start then
    from, reserved = tat, tat - interval * (burst - 1) - start
    -- the TAT is a sum of intervals and the tolerance a product: a burst's last slot can be off by 1e-16
    if not (reserved > 1e-9) then reserved = 0 end
  end
  if reserved > room then return {1, num(wait + reserved), 0} end
  wait = wait + reserved
  new_tat = from + interval
end

local probe = 0
if ARGV[5] == '1' then
  local b = redis.call('HMGET', KEYS[4], 'state', 'until', 'out', 'lease')
  local state = b[1] or 'closed'
  if state ~= 'closed' then
    probe = 1
    local idle = ARGV[7]
    local out = tonumber(b[3] or '0')
    if state == 'open' then
      local opened_until = tonumber(b[2])
      if now < opened_until then return {2, num(opened_until - now), 0} end
      out = 0
      redis.call('HSET', KEYS[4], 'state', 'half_open', 'out', 0)
      redis.call('PEXPIRE', KEYS[4], idle)
    end
    if out >= tonumber(ARGV[6]) then
      local out_until = tonumber(b[4] or '0')
      if now < out_until then return {2, num(out_until - now), 0} end
      out = 0  -- the probes never reported back (their process died?): hand out new ones
    end
    local lease = now + tonumber(ARGV[8])
    redis.call('HSET', KEYS[4], 'state', 'half_open', 'out', int(out + 1), 'lease', num(lease))
    redis.call('PEXPIRE', KEYS[4], int(ttl_ms(lease, now) + tonumber(idle)))
  end
end

if new_tat then redis.call('SET', KEYS[1], num(new_tat), 'PX', int(ttl_ms(new_tat, now))) end
return {0, num(wait), probe}
"""
)

REPORT = (
    _COMMON
    + """
-- KEYS: pause, rate, breaker, window
-- ARGV: now|'', pause, learned interval (0: none), outcome ('': none, '1': failure, '0': success),
--       failure_ratio, window, min_calls, open_for, idle_ttl_ms
local pause = tonumber(ARGV[2])
if pause > 0 then
  local paused = now + pause
  local old = tonumber(redis.call('GET', KEYS[1]) or '0')
  if old > paused then paused = old end
  redis.call('SET', KEYS[1], num(paused), 'PX', int(ttl_ms(paused, now)))
end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[9]) end
if ARGV[4] == '' then return false end

local failure = ARGV[4] == '1'
local function trip()
  local opened_until = now + tonumber(ARGV[8])
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[3], 'state', 'open', 'until', num(opened_until), 'out', 0)
  redis.call('PEXPIRE', KEYS[3], int(ttl_ms(opened_until, now) + tonumber(ARGV[9])))
  return 'open'
end

local state = redis.call('HGET', KEYS[3], 'state') or 'closed'
if state == 'half_open' then
  if failure then return trip() end
  redis.call('DEL', KEYS[3], KEYS[4])
  return 'closed'
end
if state == 'open' then return false end  -- a call admitted before the trip: no reopening, no extension

local window = tonumber(ARGV[6])
local second = math.floor(now)
local horizon = second - math.ceil(window)
local buckets = redis.call('HGETALL', KEYS[4])
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
if #stale > 0 then redis.call('HDEL', KEYS[4], unpack(stale)) end
local failed = 0
if failure then failed = 1 end
calls, failures = calls + 1, failures + failed
redis.call('HSET', KEYS[4], int(second), (here_calls + 1) .. ':' .. (here_failures + failed))
redis.call('PEXPIRE', KEYS[4], int(math.ceil(window) * 1000 + 2000))
if failure and calls >= tonumber(ARGV[7]) and failures / calls >= tonumber(ARGV[5]) then return trip() end
return false
"""
)
