-- Dropping a partitioned table drops its partitions.
DROP TABLE audit_events;
DROP TABLE usage_events;
DROP TABLE usage_rollups;
