-- GCRA over every window of a policy, decided and spent atomically.
-- KEYS[i]: state of window i (its theoretical arrival time, in microseconds).
-- ARGV[2i-1]: emission interval of window i in microseconds (period / limit).
-- ARGV[2i]:   period of window i in microseconds (the burst tolerance: `limit` requests at once).
-- Returns {allowed (1/0), retry_after_us, remaining_1, reset_after_us_1, remaining_2, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local allowed = true
local retry = 0
local tats = {}
for i = 1, n do
  -- The caller never sends a zero interval; guard anyway, a division by zero would refuse
  -- every request of the subject.
  local interval = math.max(1, tonumber(ARGV[2 * i - 1]))
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local allow_at = tat + interval - period
  if allow_at > now then
    allowed = false
    if allow_at - now > retry then retry = allow_at - now end
  end
  tats[i] = tat
end
local out = { allowed and 1 or 0, retry }
for i = 1, n do
  local interval = math.max(1, tonumber(ARGV[2 * i - 1]))
  local period = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if allowed then
    tat = tat + interval
    redis.call('SET', KEYS[i], tat, 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local remaining = math.floor((now + period - tat) / interval)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = tat - now
end
return out
