-- wrk script: POST one JSON body (read from $BENCH_BODY) until $BENCH_REQUESTS answers have come back
-- (per wrk thread; the benchmark runs one thread), then print the figures as one JSON line for
-- serve_bench.py to parse. wrk's main thread sleeps for the whole -d duration even after a thread
-- stops, so on "WRK-STOP" serve_bench.py sends wrk SIGINT: wrk then reports the real elapsed time.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local limit = tonumber(os.getenv("BENCH_REQUESTS") or "0")

-- BENCH_DELAY_MS: each connection waits a random time (exponential, this mean) before its next request,
-- as clients with think time do; the load is then paced, not "as fast as the server answers"
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pace > 0 then
  function delay()
    return math.floor(-math.log(1 - math.random()) * pace)
  end
end
local count = 0

function response(status, headers, body)
  count = count + 1
  if limit > 0 and count == limit then
    io.stdout:write("WRK-STOP\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
