-- Hourly usage rollups beside the per-minute ones, written in the same transaction, so that long
-- ranges (a month's quota totals, the dashboard's 30 days) add up hundreds of rows, not tens of
-- thousands. Partitioned by month like usage_rollups, with the same retention.
CREATE TABLE usage_rollups_hourly (
    hour                timestamptz NOT NULL,
    tenant_id           text NOT NULL,
    credential_id       text NOT NULL,
    model               text NOT NULL,
    requests            bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,
    prompt_tokens       bigint NOT NULL DEFAULT 0,
    completion_tokens   bigint NOT NULL DEFAULT 0,
    audio_ms            bigint NOT NULL DEFAULT 0,
    queue_wait_ms_sum   bigint NOT NULL DEFAULT 0,
    latency_ms_sum      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, tenant_id, credential_id, model),
    CHECK (hour = date_trunc('hour', hour))
) PARTITION BY RANGE (hour);
CREATE INDEX usage_rollups_hourly_tenant_hour_idx ON usage_rollups_hourly (tenant_id, hour);

-- One hourly partition for each minute partition there is, then the hours so far.
DO $$
DECLARE p record;
BEGIN
  FOR p IN
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'usage_rollups'::regclass
  LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF usage_rollups_hourly %s',
                   replace(p.relname, 'usage_rollups_p', 'usage_rollups_hourly_p'), p.bound);
  END LOOP;
END $$;

INSERT INTO usage_rollups_hourly
SELECT date_trunc('hour', minute), tenant_id, credential_id, model, sum(requests), sum(errors), sum(prompt_tokens),
       sum(completion_tokens), sum(audio_ms), sum(queue_wait_ms_sum), sum(latency_ms_sum)
FROM usage_rollups GROUP BY 1, 2, 3, 4;
