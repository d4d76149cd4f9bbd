DROP TABLE jobs;
DROP TABLE workers;
DROP TABLE worker_pools;
