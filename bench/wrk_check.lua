-- wrk script for the order gate bench (bench/gate.py http sets the environment):
-- POST /api/v1/orders/check with a JWT Bearer token and one order body.
--   WRK_TOKEN  an access token of a trader on the bench account
--   WRK_BODY   the order as JSON
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN")

function done(summary, latency, requests)
  io.write(string.format("p99.9: %.2f ms\n", latency:percentile(99.9) / 1000))
end
