-- internal.pg_cron_loaded: whether pg_cron is loaded on this server, and the database it keeps its
-- jobs in. Its setting cron.database_name exists only where the library is loaded
-- (shared_preload_libraries). PostgreSQL shows it only to superusers and members of
-- pg_read_all_settings: for any other owner role, loaded and cron_database are NULL (unknown).
-- Raises: nothing. Callers: api.schedule_expiry, api.unschedule_expiry, api.expiry_status.
CREATE OR REPLACE FUNCTION internal.pg_cron_loaded(OUT loaded boolean, OUT cron_database text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    cron_database := current_setting('cron.database_name', true);
    loaded := cron_database IS NOT NULL;
EXCEPTION WHEN insufficient_privilege THEN
    loaded := NULL;
    cron_database := NULL;
END
$$;
COMMENT ON FUNCTION internal.pg_cron_loaded() IS
    'Whether pg_cron is loaded (NULL: this role may not tell) and its cron.database_name.';
REVOKE ALL ON FUNCTION internal.pg_cron_loaded() FROM PUBLIC;

-- internal.expiry_window: how long after its last success a runner that passes every p_every
-- still counts as running: two of its intervals, and at least 10 minutes, so that one slow or
-- missed pass (a restart, a long backlog) does not fail `verify`. A one-off pass (NULL) counts
-- for 10 minutes.
-- Raises: nothing. Callers: api.expiry_status.
CREATE OR REPLACE FUNCTION internal.expiry_window(p_every interval)
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(coalesce(2 * p_every, interval '0'), interval '10 minutes')
$$;
COMMENT ON FUNCTION internal.expiry_window(interval) IS
    'How long after its last success a runner with this interval counts as running: 2 intervals, at least 10 minutes.';
REVOKE ALL ON FUNCTION internal.expiry_window(interval) FROM PUBLIC;

-- internal.expiry_job_name: the pg_cron job name for this database's expiry,
-- marketplace-expire-orders:<database>. pg_cron's names are at most 63 bytes; a longer one ends
-- in a hash of the database name instead, so two databases never share a job.
-- Raises: nothing. Callers: api.schedule_expiry, api.unschedule_expiry.
CREATE OR REPLACE FUNCTION internal.expiry_job_name()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN octet_length(n) <= 63 THEN n
                ELSE 'marketplace-expire-orders:' || left(md5(current_database()), 32) END
    FROM (SELECT 'marketplace-expire-orders:' || current_database() AS n) s
$$;
COMMENT ON FUNCTION internal.expiry_job_name() IS
    'The pg_cron job name of this database''s expiry: marketplace-expire-orders:<database> (hashed past 63 bytes).';
REVOKE ALL ON FUNCTION internal.expiry_job_name() FROM PUBLIC;
