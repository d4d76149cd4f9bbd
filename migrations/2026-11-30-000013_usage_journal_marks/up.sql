-- How far each instance's usage journal is written: segments up to `applied_segment` are in
-- usage_rollups (written in the same transaction), so a restart never bills them twice.
CREATE TABLE usage_journal_marks (
    journal_id text PRIMARY KEY,
    applied_segment bigint NOT NULL CHECK (applied_segment >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
