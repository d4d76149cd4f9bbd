-- Adaptive admission: the queue wait a pool aims to keep under; NULL turns it off.
ALTER TABLE worker_pools ADD COLUMN queue_wait_target_ms integer
    CHECK (queue_wait_target_ms IS NULL OR queue_wait_target_ms BETWEEN 10 AND 600000);
UPDATE worker_pools SET queue_wait_target_ms = LEAST(5000, queue_deadline_ms);
