-- The order expiry can run inside PostgreSQL (pg_cron) as well as in the `expire-orders` worker:
-- each runner records its last success here, and the pg_cron schedule that
-- `python -m pyapp expiry-schedule on` set is remembered in the database it expires, so that
-- `status`, `verify` and api.expiry_status() can say which runner runs and when it last succeeded.
-- depends: 0017_plpgsql_check_clean

SET LOCAL lock_timeout = '5s';

-- One row per runner: pg_cron (the scheduled job), worker (`expire-orders --every`), manual
-- (`expire-orders` once). Written by api.record_expiry_run after each pass.
CREATE TABLE internal.expiry_run (
    runner          text PRIMARY KEY CHECK (runner IN ('pg_cron', 'worker', 'manual')),
    every           interval CHECK (every > interval '0'),
    last_success_at timestamptz NOT NULL,
    last_expired    integer NOT NULL CHECK (last_expired >= 0),
    runs            bigint NOT NULL DEFAULT 1,
    expired_total   bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE internal.expiry_run IS
    'Each expiry runner''s cadence, last success, orders expired by it and passes (api.record_expiry_run).';
REVOKE ALL ON internal.expiry_run FROM PUBLIC;

-- At most one row: the pg_cron job that expires this database's orders, as scheduled. The job
-- itself lives in pg_cron's database (cron.job), which may be another database of the server.
CREATE TABLE internal.expiry_schedule (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    job_name      text NOT NULL,
    cron_database text NOT NULL,
    schedule      text NOT NULL,
    command       text NOT NULL,
    every         interval NOT NULL CHECK (every > interval '0'),
    hold          interval NOT NULL CHECK (hold >= interval '0'),
    batch_size    integer NOT NULL CHECK (batch_size BETWEEN 1 AND 10000),
    scheduled_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.expiry_schedule IS
    'The pg_cron job expiring this database''s unpaid orders, as `expiry-schedule on` scheduled it (no row: none).';
REVOKE ALL ON internal.expiry_schedule FROM PUBLIC;
