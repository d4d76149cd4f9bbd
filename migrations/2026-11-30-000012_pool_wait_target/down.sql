ALTER TABLE worker_pools DROP COLUMN queue_wait_target_ms;
