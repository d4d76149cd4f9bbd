-- The dashboard overview's queries (server/dashboard/tenant/overview.rs) over a tenant with about
-- a million usage rollup rows. Seed a scratch database first (docs/performance.md, dashboard
-- overview), then: psql "$DB" -q -f ops/bench/dashboard_overview.sql | grep Time
\timing on
-- usage::grouped by model, 24 h and 30 days
SELECT r.model AS key, sum(r.requests)::bigint, sum(r.errors)::bigint, sum(r.prompt_tokens)::bigint, sum(r.completion_tokens)::bigint, sum(r.audio_ms)::bigint FROM usage_rollups r JOIN tenants t ON t.id = r.tenant_id WHERE r.tenant_id = 'ten_bench00000000000000001' AND r.minute >= now() - interval '24 hours' AND r.minute < now() GROUP BY 1 ORDER BY 1;
SELECT r.model AS key, sum(r.requests)::bigint, sum(r.errors)::bigint, sum(r.prompt_tokens)::bigint, sum(r.completion_tokens)::bigint, sum(r.audio_ms)::bigint FROM usage_rollups r JOIN tenants t ON t.id = r.tenant_id WHERE r.tenant_id = 'ten_bench00000000000000001' AND r.minute >= now() - interval '30 days' AND r.minute < now() GROUP BY 1 ORDER BY 1;
-- usage_views::hourly
SELECT date_trunc('hour', minute), sum(requests)::bigint, sum(prompt_tokens + completion_tokens)::bigint FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= now() - interval '24 hours' AND minute < now() GROUP BY 1 ORDER BY 1;
-- usage_views::queue_wait_p95_ms
SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY wait) FROM (SELECT sum(queue_wait_ms_sum)::double precision / sum(requests) AS wait FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= now() - interval '24 hours' AND minute < now() GROUP BY minute HAVING sum(requests) > 0) m;
-- usage::period_totals (day, month)
SELECT coalesce(sum(requests) FILTER (WHERE minute >= date_trunc('day', now())), 0)::bigint, coalesce(sum(prompt_tokens + completion_tokens) FILTER (WHERE minute >= date_trunc('month', now())), 0)::bigint FROM usage_rollups WHERE tenant_id = 'ten_bench00000000000000001' AND minute >= date_trunc('month', now());
