-- The dashboard overview's queries (server/dashboard/tenant/overview.rs) over a tenant with about a
-- million per-minute usage rollup rows (30 days × 23 credential/model pairs) and their hourly rows.
-- Run on a scratch database made from the tests' template, e.g.
--   createdb -T gatehouse_tpl_… gh_overview_bench && psql gh_overview_bench -q -f ops/bench/dashboard_overview.sql | grep Time
-- (the seeding statements below take a few seconds and are timed too; the queries follow them).
CREATE TABLE IF NOT EXISTS usage_rollups_p_bench PARTITION OF usage_rollups FOR VALUES FROM ('2000-01-01') TO (date_trunc('month', now()));
CREATE TABLE IF NOT EXISTS usage_rollups_hourly_p_bench PARTITION OF usage_rollups_hourly FOR VALUES FROM ('2000-01-01') TO (date_trunc('month', now()));
INSERT INTO tenants (id, slug, name, status, time_zone, plan_id)
SELECT 'ten_bench00000000000000001', 'bench', 'Bench', 'active', 'Asia/Kolkata', (SELECT id FROM plans LIMIT 1)
WHERE NOT EXISTS (SELECT 1 FROM tenants WHERE id = 'ten_bench00000000000000001');
INSERT INTO usage_rollups (minute, tenant_id, credential_id, model, requests, errors, prompt_tokens, completion_tokens, audio_ms, queue_wait_ms_sum, latency_ms_sum)
SELECT m, 'ten_bench00000000000000001', 'key_' || (p % 5), 'model-' || (p / 5), 3, 0, 300, 100, 0, 30, 900
FROM generate_series(date_trunc('minute', now()) - interval '30 days', date_trunc('minute', now()) - interval '1 minute', interval '1 minute') m,
     generate_series(0, 22) p
ON CONFLICT DO NOTHING;
INSERT INTO usage_rollups_hourly
SELECT date_trunc('hour', minute), tenant_id, credential_id, model, sum(requests), sum(errors), sum(prompt_tokens),
       sum(completion_tokens), sum(audio_ms), sum(queue_wait_ms_sum), sum(latency_ms_sum)
FROM usage_rollups GROUP BY 1, 2, 3, 4 ON CONFLICT DO NOTHING;
ANALYZE usage_rollups, usage_rollups_hourly;
\timing on
-- usage_hourly::grouped by model, last 24 hours and last 30 days: full hours from the hourly rows, the minutes around them
PREPARE g(timestamptz, timestamptz, timestamptz, timestamptz) AS
SELECT key, sum(requests)::bigint, sum(errors)::bigint, sum(prompt_tokens)::bigint, sum(completion_tokens)::bigint, sum(audio_ms)::bigint FROM (
  SELECT model AS key, requests, errors, prompt_tokens, completion_tokens, audio_ms FROM usage_rollups_hourly WHERE tenant_id = 'ten_bench00000000000000001' AND hour >= $3 AND hour < $4
  UNION ALL SELECT model, requests, errors, prompt_tokens, completion_tokens, audio_ms FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= $1 AND minute < $3
  UNION ALL SELECT model, requests, errors, prompt_tokens, completion_tokens, audio_ms FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= $4 AND minute < $2) p GROUP BY 1 ORDER BY 1;
EXECUTE g(now() - interval '24 hours', now(), date_trunc('hour', now() - interval '24 hours') + interval '1 hour', date_trunc('hour', now()));
EXECUTE g(now() - interval '30 days', now(), date_trunc('hour', now() - interval '30 days') + interval '1 hour', date_trunc('hour', now()));
-- usage_views::hourly and queue_wait_p95_ms (minute rows, 24 hours)
SELECT date_trunc('hour', minute), sum(requests)::bigint, sum(prompt_tokens + completion_tokens)::bigint FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= now() - interval '24 hours' AND minute < now() GROUP BY 1 ORDER BY 1;
SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY wait) FROM (SELECT sum(queue_wait_ms_sum)::double precision / sum(requests) AS wait FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= now() - interval '24 hours' AND minute < now() GROUP BY minute HAVING sum(requests) > 0) m;
-- usage::period_totals: today and this month in Asia/Kolkata (the day starts at :30 past an hour)
PREPARE a(timestamptz, timestamptz, timestamptz, timestamptz) AS
SELECT coalesce(sum(requests), 0)::bigint, coalesce(sum(prompt_tokens + completion_tokens), 0)::bigint, coalesce(sum(audio_ms), 0)::bigint FROM (
  SELECT requests, prompt_tokens, completion_tokens, audio_ms FROM usage_rollups_hourly WHERE tenant_id = 'ten_bench00000000000000001' AND hour >= $3 AND hour < $4
  UNION ALL SELECT requests, prompt_tokens, completion_tokens, audio_ms FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= $1 AND minute < $3
  UNION ALL SELECT requests, prompt_tokens, completion_tokens, audio_ms FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= $4 AND minute < $2) p;
EXECUTE a(date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata', now() + interval '1 hour', date_trunc('hour', date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata') + interval '1 hour', date_trunc('hour', now() + interval '1 hour'));
EXECUTE a(date_trunc('month', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata', now() + interval '1 hour', date_trunc('hour', date_trunc('month', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata') + interval '1 hour', date_trunc('hour', now() + interval '1 hour'));
