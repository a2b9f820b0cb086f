SET LOCAL lock_timeout = '5s';
DROP TABLE internal.checkout_latency;
DROP TABLE internal.checkout_stats;
