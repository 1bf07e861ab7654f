-- wrk_post.lua - the wrk script of bench/bench_notify.sh: every request is a
-- POST /api/msg/product form body (the seed's fields), uid cycling over
-- WRK_UIDS users (default 1000) and data numbered per wrk thread.
-- WRK_DELAY_MS > 0 makes each connection wait that long between requests
-- (paced load: about connections * 1000 / WRK_DELAY_MS requests per second).
-- done() prints one machine-readable line:
--   WRK requests=N rps=R p50_ms=X p99_ms=Y non2xx=N errors=N
local counter = 0
local uids = tonumber(os.getenv("WRK_UIDS") or "1000")
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function request()
  counter = counter + 1
  local body = "uid=" .. (counter % uids + 1) .. "&type=1&data=bench+notice+" .. counter
  return wrk.format(nil, "/api/msg/product", nil, body)
end

if pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
