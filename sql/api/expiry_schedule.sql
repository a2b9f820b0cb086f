-- api.record_expiry_run: records a successful expiry pass of a runner and returns p_expired, so
-- that a runner records in the same statement that expires: pg_cron's job runs
--   SELECT api.record_expiry_run('pg_cron', api.expire_pending_orders(interval '30 minutes', 1000), interval '1 minute')
-- and `expire-orders` calls it after each pass ('worker' with --every, 'manual' without). p_every
-- is the runner's interval (required for pg_cron and worker; ignored for manual): it decides how
-- long the success counts as "running" (internal.expiry_window). Like the expiry, it runs during
-- maintenance mode.
-- Raises: MKV00 unknown runner, negative or NULL count, missing or non-positive interval.
-- Callers: pg_cron's job (api.schedule_expiry), `python -m pyapp expire-orders`, DBAs.
CREATE OR REPLACE FUNCTION api.record_expiry_run(p_runner text, p_expired integer, p_every interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_runner IS NULL OR p_runner NOT IN ('pg_cron', 'worker', 'manual') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'runner must be pg_cron, worker or manual',
            DETAIL = jsonb_build_object('field', 'runner', 'value', p_runner)::text;
    END IF;
    IF p_expired IS NULL OR p_expired < 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the number of expired orders must not be negative',
            DETAIL = jsonb_build_object('field', 'expired', 'value', p_expired)::text;
    END IF;
    IF p_runner <> 'manual' AND (p_every IS NULL OR p_every <= interval '0') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'a runner''s interval must be positive',
            DETAIL = jsonb_build_object('field', 'every', 'value', p_every)::text;
    END IF;
    INSERT INTO internal.expiry_run AS r (runner, every, last_success_at, last_expired, runs, expired_total)
    VALUES (p_runner, CASE WHEN p_runner <> 'manual' THEN p_every END, now(), p_expired, 1, p_expired)
    ON CONFLICT (runner) DO UPDATE
        SET every = EXCLUDED.every, last_success_at = EXCLUDED.last_success_at,
            last_expired = EXCLUDED.last_expired, runs = r.runs + 1,
            expired_total = r.expired_total + EXCLUDED.expired_total;
    RETURN p_expired;
END
$$;
COMMENT ON FUNCTION api.record_expiry_run(text, integer, interval) IS
    'Records a successful expiry pass of a runner (pg_cron, worker, manual) with its interval; returns the count it was given.';
REVOKE ALL ON FUNCTION api.record_expiry_run(text, integer, interval) FROM PUBLIC;

-- api.schedule_expiry: the pg_cron job that expires this database's unpaid orders every
-- p_every_minutes, with the hold window p_hold and batch size p_batch_size, and remembers it
-- (internal.expiry_schedule), replacing an earlier schedule. Returns what to schedule in pg_cron's
-- database (cron_database): job_name, schedule, command and database, for
-- cron.schedule_in_database(job_name, schedule, command, database). pg_cron keeps its jobs in one
-- database per server, so the scheduling itself happens there (`python -m pyapp expiry-schedule
-- on` does both, and forgets this record again when pg_cron refuses). Each run is one batch, one
-- short transaction like each pass of the worker: a backlog larger than a batch drains at one
-- batch per interval.
-- Raises: MKV00 interval outside 1..59 minutes, negative hold window, batch size outside 1..10000;
--         MKS09 pg_cron is not loaded on this server (the worker is the way), or this role may not
--         tell (it needs pg_read_all_settings).
-- Callers: `python -m pyapp expiry-schedule on`, DBAs.
CREATE OR REPLACE FUNCTION api.schedule_expiry(
    p_every_minutes integer DEFAULT 1,
    p_hold interval DEFAULT '30 minutes',
    p_batch_size integer DEFAULT 1000)
RETURNS TABLE (job_name text, schedule text, command text, database text, cron_database text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cron     record;
    v_job      text;
    v_schedule text;
    v_command  text;
    v_every    interval;
BEGIN
    IF p_every_minutes IS NULL OR p_every_minutes NOT BETWEEN 1 AND 59 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the interval must be from 1 to 59 minutes',
            DETAIL = jsonb_build_object('field', 'every_minutes', 'value', p_every_minutes)::text;
    END IF;
    IF p_hold IS NULL OR p_hold < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the hold window must not be negative',
            DETAIL = jsonb_build_object('field', 'hold')::text;
    END IF;
    IF p_batch_size IS NULL OR p_batch_size NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'batch size must be between 1 and 10000',
            DETAIL = jsonb_build_object('field', 'batch_size', 'value', p_batch_size)::text;
    END IF;
    SELECT * INTO v_cron FROM internal.pg_cron_loaded();
    IF v_cron.loaded IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKS09',
            MESSAGE = format('role %s may not see whether pg_cron is loaded on this server', current_user),
            DETAIL = jsonb_build_object('pgCron', 'unknown')::text,
            HINT = format('A superuser can GRANT pg_read_all_settings TO %s; or run the expiry worker: '
                          'python -m pyapp expire-orders --every 60.', current_user);
    ELSIF NOT v_cron.loaded THEN
        RAISE EXCEPTION USING ERRCODE = 'MKS09',
            MESSAGE = 'pg_cron is not loaded on this server, so it cannot run the expiry',
            DETAIL = jsonb_build_object('pgCron', 'not loaded')::text,
            HINT = 'Run the expiry worker instead: python -m pyapp expire-orders --every 60 '
                   '(deploy/systemd/marketplace-expiry.service). To use pg_cron, install postgresql-15-cron, '
                   'set shared_preload_libraries = ''pg_cron'' and cron.use_background_workers = on, '
                   'and restart PostgreSQL.';
    END IF;
    v_job := internal.expiry_job_name();
    v_every := make_interval(mins => p_every_minutes);
    v_schedule := CASE WHEN p_every_minutes = 1 THEN '* * * * *' ELSE format('*/%s * * * *', p_every_minutes) END;
    v_command := format('SELECT api.record_expiry_run(%L, api.expire_pending_orders(interval %L, %s), interval %L)',
                        'pg_cron', trim_scale(extract(epoch FROM p_hold) / 60) || ' minutes', p_batch_size,
                        p_every_minutes || CASE WHEN p_every_minutes = 1 THEN ' minute' ELSE ' minutes' END);
    INSERT INTO internal.expiry_schedule AS s
        (id, job_name, cron_database, schedule, command, every, hold, batch_size, scheduled_at)
    VALUES (true, v_job, v_cron.cron_database, v_schedule, v_command, v_every, p_hold, p_batch_size, now())
    ON CONFLICT (id) DO UPDATE
        SET job_name = EXCLUDED.job_name, cron_database = EXCLUDED.cron_database,
            schedule = EXCLUDED.schedule, command = EXCLUDED.command, every = EXCLUDED.every,
            hold = EXCLUDED.hold, batch_size = EXCLUDED.batch_size, scheduled_at = EXCLUDED.scheduled_at;
    RETURN QUERY SELECT v_job, v_schedule, v_command, current_database()::text, v_cron.cron_database;
END
$$;
COMMENT ON FUNCTION api.schedule_expiry(integer, interval, integer) IS
    'Records the pg_cron expiry schedule of this database and returns the job to schedule in pg_cron''s database (MKS09 when pg_cron is not loaded).';
REVOKE ALL ON FUNCTION api.schedule_expiry(integer, interval, integer) FROM PUBLIC;

-- api.unschedule_expiry: forgets this database's pg_cron expiry schedule and returns the job to
-- unschedule in pg_cron's database (the recorded one, or the name it would have), and whether one
-- was recorded. cron_database is NULL when pg_cron is not loaded and nothing was recorded.
-- Raises: nothing. Callers: `python -m pyapp expiry-schedule off`, DBAs.
CREATE OR REPLACE FUNCTION api.unschedule_expiry()
RETURNS TABLE (job_name text, cron_database text, was_scheduled boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_job text;
    v_db  text;
BEGIN
    DELETE FROM internal.expiry_schedule s RETURNING s.job_name, s.cron_database INTO v_job, v_db;
    IF FOUND THEN
        RETURN QUERY SELECT v_job, v_db, true;
    ELSE
        RETURN QUERY SELECT internal.expiry_job_name(), (internal.pg_cron_loaded()).cron_database, false;
    END IF;
END
$$;
COMMENT ON FUNCTION api.unschedule_expiry() IS
    'Forgets the pg_cron expiry schedule of this database; returns the job to unschedule in pg_cron''s database.';
REVOKE ALL ON FUNCTION api.unschedule_expiry() FROM PUBLIC;

-- api.expiry_status: which runner expires this database's unpaid orders, and when each last
-- succeeded; one row per runner: pg_cron, worker, and manual once a one-off pass ran. A runner is
-- running when it succeeded within internal.expiry_window of its interval (2 intervals, at least
-- 10 minutes); a pg_cron job scheduled within that window and not run yet is waiting (and counts
-- as running). States: pg_cron running, waiting, late (scheduled but not succeeding), not_loaded
-- (scheduled, but pg_cron is not loaded), off (not scheduled, whatever ran before), unavailable
-- (not scheduled, and pg_cron is not loaded); worker running, stopped, never; manual ran.
-- job_name and cron_database: the pg_cron job as scheduled (NULL when none is). pg_cron's own
-- tables (cron.job, cron.job_run_details) are in pg_cron's database: `python -m pyapp
-- expiry-schedule status` shows them too.
-- Raises: nothing. Callers: api.integrity_report, `python -m pyapp status` and `expiry-schedule
-- status`, DBAs.
CREATE OR REPLACE FUNCTION api.expiry_status()
RETURNS TABLE (runner text, state text, running boolean, every interval, last_success_at timestamptz,
               last_expired integer, runs bigint, job_name text, cron_database text, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cron   record;
    v_sched  record;
    v_run    record;
    v_found  boolean;
    v_since  timestamptz;
    v_state  text;
    v_detail text;
    v_last   text;
BEGIN
    SELECT * INTO v_cron FROM internal.pg_cron_loaded();

    -- pg_cron
    SELECT * INTO v_sched FROM internal.expiry_schedule s;
    v_found := FOUND;
    SELECT * INTO v_run FROM internal.expiry_run r WHERE r.runner = 'pg_cron';
    v_last := CASE WHEN v_run.last_success_at IS NULL THEN 'never'
                   ELSE format('%s (%s ago), %s expired', date_trunc('second', v_run.last_success_at),
                               date_trunc('second', now() - v_run.last_success_at), v_run.last_expired) END;
    IF v_found THEN
        v_since := greatest(v_sched.scheduled_at, v_run.last_success_at);
        IF v_cron.loaded IS NOT DISTINCT FROM false THEN
            v_state := 'not_loaded';
            v_detail := format('job %s is scheduled (every %s), but pg_cron is not loaded on this server, so it '
                               'does not run: load it (shared_preload_libraries) or run the worker '
                               '(python -m pyapp expire-orders --every 60); last success: %s',
                               v_sched.job_name, v_sched.every, v_last);
        ELSIF v_since <= now() - internal.expiry_window(v_sched.every) THEN
            v_state := 'late';
            v_detail := format('job %s (every %s, scheduled %s) has not succeeded within %s: see cron.job_run_details '
                               'in database %s; last success: %s',
                               v_sched.job_name, v_sched.every, date_trunc('second', v_sched.scheduled_at),
                               internal.expiry_window(v_sched.every), v_sched.cron_database, v_last)
                        || CASE WHEN v_cron.loaded IS NULL THEN format(
                               ' (role %s may not see whether pg_cron is loaded: GRANT pg_read_all_settings)',
                               current_user) ELSE '' END;
        ELSIF v_run.last_success_at >= v_sched.scheduled_at THEN
            v_state := 'running';
            v_detail := format('job %s in database %s runs every %s (pg_cron in database %s); last success %s',
                               v_sched.job_name, current_database(), v_sched.every, v_sched.cron_database, v_last);
        ELSE
            v_state := 'waiting';
            v_detail := format('job %s scheduled %s to run every %s: waiting for its first run',
                               v_sched.job_name, date_trunc('second', v_sched.scheduled_at), v_sched.every);
        END IF;
    ELSIF v_cron.loaded IS NOT DISTINCT FROM false THEN
        v_state := 'unavailable';
        v_detail := 'pg_cron is not loaded on this server: the worker is the way '
                    '(python -m pyapp expire-orders --every 60)'
                    || CASE WHEN v_run.last_success_at IS NOT NULL THEN '; last success: ' || v_last ELSE '' END;
    ELSE
        v_state := 'off';
        v_detail := 'not scheduled (python -m pyapp expiry-schedule on)'
                    || CASE WHEN v_run.last_success_at IS NOT NULL THEN '; last success: ' || v_last ELSE '' END;
    END IF;
    RETURN QUERY SELECT 'pg_cron'::text, v_state, v_state IN ('running', 'waiting'),
                        coalesce(v_sched.every, v_run.every), v_run.last_success_at, v_run.last_expired,
                        v_run.runs, v_sched.job_name, v_sched.cron_database, v_detail;

    -- The worker
    SELECT * INTO v_run FROM internal.expiry_run r WHERE r.runner = 'worker';
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'worker'::text, 'never'::text, false, NULL::interval, NULL::timestamptz,
                            NULL::integer, NULL::bigint, NULL::text, NULL::text,
                            'has not run in this database (python -m pyapp expire-orders --every 60)'::text;
    ELSE
        v_last := format('%s (%s ago), %s expired', date_trunc('second', v_run.last_success_at),
                         date_trunc('second', now() - v_run.last_success_at), v_run.last_expired);
        v_state := CASE WHEN v_run.last_success_at > now() - internal.expiry_window(v_run.every)
                        THEN 'running' ELSE 'stopped' END;
        RETURN QUERY SELECT 'worker'::text, v_state, v_state = 'running', v_run.every, v_run.last_success_at,
                            v_run.last_expired, v_run.runs, NULL::text, NULL::text,
                            CASE WHEN v_state = 'running'
                                 THEN format('passes every %s; last success %s; %s passes', v_run.every, v_last, v_run.runs)
                                 ELSE format('not running: last success %s, every %s', v_last, v_run.every) END;
    END IF;

    -- One-off passes (`expire-orders` without --every): shown, never counted as running.
    SELECT * INTO v_run FROM internal.expiry_run r WHERE r.runner = 'manual';
    IF FOUND THEN
        RETURN QUERY SELECT 'manual'::text, 'ran'::text, false, NULL::interval, v_run.last_success_at,
                            v_run.last_expired, v_run.runs, NULL::text, NULL::text,
                            format('last one-off pass (expire-orders without --every) %s (%s ago), %s expired',
                                   date_trunc('second', v_run.last_success_at),
                                   date_trunc('second', now() - v_run.last_success_at), v_run.last_expired);
    END IF;
END
$$;
COMMENT ON FUNCTION api.expiry_status() IS
    'Which expiry runner runs (pg_cron, worker, manual): state, running, interval, last success, last count, passes, pg_cron job, detail.';
REVOKE ALL ON FUNCTION api.expiry_status() FROM PUBLIC;
