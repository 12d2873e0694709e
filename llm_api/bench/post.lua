-- wrk script: POSTs the JSON body in $WRK_BODY_FILE (with optional auth headers) and prints
-- one JSON line of results for bench.py.
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
local xkey = os.getenv("WRK_X_API_KEY")
if xkey and xkey ~= "" then
  wrk.headers["x-api-key"] = xkey
  wrk.headers["anthropic-version"] = "2023-06-01"
end

-- More headers, one "Name: value" a line (the quota comparison's gateway secret and consumer).
local extra = os.getenv("WRK_HEADERS")
if extra and extra ~= "" then
  for line in extra:gmatch("[^\n]+") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
      wrk.headers[name] = value
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
