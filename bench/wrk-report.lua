-- wrk script for bench/http.sh: sets the method, body and headers from the
-- environment and prints one machine-readable RESULT line at the end.
--
--   WRK_LABEL    name of the scenario (printed back)
--   WRK_METHOD   GET (default) or POST
--   WRK_BODY     request body (sent with Content-Type: application/json)
--   WRK_HEADER   one extra header, "Name: value" (e.g. the credentials)

local label = os.getenv("WRK_LABEL") or "unnamed"

wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
local header = os.getenv("WRK_HEADER")
if header and header ~= "" then
  local name, value = header:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT %s rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d bytes_per_req=%.0f non2xx=%d socket_errors=%d\n",
    label,
    summary.requests / seconds,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    latency.max / 1000,
    summary.requests,
    summary.requests > 0 and summary.bytes / summary.requests or 0,
    e.status,
    e.connect + e.read + e.write + e.timeout))
end
