-- wrk script for bench/http_balance.py: every request carries the next user's DRF token
-- (BENCH_TOKENS: a file of keys, one a line) and the summary is written as JSON to
-- BENCH_WRK_OUT.
local counter = 0

function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end

local tokens = {}
local idx = 0

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if #line > 0 then tokens[#tokens + 1] = "Token " .. line end
  end
  -- Threads start far apart in the list, so they do not ask for the same users in step.
  idx = (thread_id * 7919) % #tokens
end

function request()
  idx = idx % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = tokens[idx] })
end

function done(summary, latency, requests)
  -- The whole latency histogram (value in microseconds -> count), so that runs can be merged
  -- and percentiles computed exactly by the caller.
  local hist = {}
  for i = 1, #latency do
    local value, count = latency(i)
    hist[#hist + 1] = string.format('"%d": %d', value, count)
  end
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_WRK_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "hist": {%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(hist, ", ")))
  out:close()
end
