DROP TABLE usage_rollups_hourly;
