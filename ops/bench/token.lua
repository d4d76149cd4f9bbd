-- wrk script: client-credentials token requests with HTTP Basic authentication.
-- BASIC = base64("client_id:client_secret"), set by ops/bench/token.sh.
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=models:read"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")

local failed = 0
response = function(status, headers, body)
  if status ~= 200 then failed = failed + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("non-200 responses: %d\n", failed))
end
