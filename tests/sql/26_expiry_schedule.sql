-- Which expiry runner runs: api.record_expiry_run (each runner's last success),
-- api.schedule_expiry / api.unschedule_expiry (the pg_cron schedule this database remembers),
-- api.expiry_status and the expiry_running check of api.integrity_report. Whether pg_cron is loaded
-- is internal.pg_cron_loaded(), replaced here by stubs (the test transaction rolls them back), so
-- this file means the same on a server with and without pg_cron. tests/test_expiry_schedule.py
-- runs the real job.
BEGIN;
\ir lib/helpers.psql
SELECT plan(55);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p text, ADD o text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10);
UPDATE fx SET o = pg_temp.mk_order(buyer, p, 3);

CREATE FUNCTION pg_temp.pg_cron(p_loaded boolean) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format($$CREATE OR REPLACE FUNCTION internal.pg_cron_loaded(OUT loaded boolean, OUT cron_database text)
                     LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
                     AS $body$SELECT %L::boolean, %L::text$body$ $$,
                   p_loaded, CASE WHEN p_loaded THEN 'postgres' END);
END
$f$;
CREATE FUNCTION pg_temp.state(p_runner text) RETURNS text LANGUAGE sql AS $$
    SELECT state FROM api.expiry_status() WHERE runner = p_runner
$$;
CREATE FUNCTION pg_temp.check_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT ok FROM api.integrity_report() WHERE check_name = 'expiry_running'
$$;
CREATE FUNCTION pg_temp.check_detail() RETURNS text LANGUAGE sql AS $$
    SELECT detail FROM api.integrity_report() WHERE check_name = 'expiry_running'
$$;
-- What pg_cron runs: the recorded command, in this database.
CREATE FUNCTION pg_temp.run_job() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v integer;
BEGIN
    EXECUTE (SELECT command FROM internal.expiry_schedule) INTO v;
    RETURN v;
END
$$;

-- The real internal.pg_cron_loaded, before any stub (1)
SELECT is((SELECT loaded FROM internal.pg_cron_loaded()),
          current_setting('cron.database_name', true) IS NOT NULL,
          'internal.pg_cron_loaded() says whether pg_cron''s cron.database_name exists on this server');

-- api.record_expiry_run (9)
SELECT is(api.record_expiry_run('worker', 3, '1 minute'), 3, 'record_expiry_run returns the count it was given');
SELECT results_eq($$ SELECT runner, every, last_success_at, last_expired, runs, expired_total FROM internal.expiry_run $$,
                  $$ VALUES ('worker'::text, interval '1 minute', now(), 3, 1::bigint, 3::bigint) $$,
                  'it records the runner, its interval, when and how many');
SELECT is(api.record_expiry_run('worker', 2, '30 seconds'), 2, 'a second pass');
SELECT results_eq($$ SELECT every, last_expired, runs, expired_total FROM internal.expiry_run WHERE runner = 'worker' $$,
                  $$ VALUES (interval '30 seconds', 2, 2::bigint, 5::bigint) $$,
                  'adds to the passes and the total, and keeps the latest interval and count');
SELECT is((SELECT every FROM internal.expiry_run WHERE runner = 'manual' AND api.record_expiry_run('manual', 0, '1 minute') = 0),
          NULL::interval, 'a one-off pass (manual) has no interval');
SELECT throws_ok($$ SELECT api.record_expiry_run('cron', 1, '1 minute') $$, 'MKV00', NULL, 'an unknown runner is MKV00');
SELECT throws_ok($$ SELECT api.record_expiry_run('worker', -1, '1 minute') $$, 'MKV00', NULL, 'a negative count is MKV00');
SELECT throws_ok($$ SELECT api.record_expiry_run('worker', 1) $$, 'MKV00', NULL, 'a worker without its interval is MKV00');
SELECT throws_ok($$ SELECT api.record_expiry_run('pg_cron', 1, '0 seconds') $$, 'MKV00', NULL, 'a zero interval is MKV00');

-- A fresh database on a server without pg_cron (6)
DELETE FROM internal.expiry_run;
SELECT pg_temp.pg_cron(false);
SELECT set_eq($$ SELECT runner, state, running FROM api.expiry_status() $$,
              $$ VALUES ('pg_cron'::text, 'unavailable'::text, false), ('worker', 'never', false) $$,
              'expiry_status: pg_cron unavailable, the worker never ran, no one-off pass listed');
SELECT matches((SELECT detail FROM api.expiry_status() WHERE runner = 'pg_cron'), 'expire-orders --every 60',
               'and it points at the worker');
SELECT ok(pg_temp.check_ok(), 'expiry_running is ok on a fresh database with no unpaid order past the hold window');
UPDATE "Order" SET "createdAt" = now() - interval '1 hour' WHERE id = (SELECT o FROM fx);
SELECT ok(NOT pg_temp.check_ok(), 'it fails once an unpaid order is past the hold window and nothing runs');
SELECT matches(pg_temp.check_detail(), 'no expiry runner is running and 1 unpaid orders are older than',
               'the detail says so');
SELECT throws_ok($$ SELECT * FROM api.schedule_expiry() $$, 'MKS09', 'pg_cron is not loaded on this server, so it cannot run the expiry',
                 'schedule_expiry refuses (MKS09) where pg_cron is not loaded');

-- The worker (8)
SELECT matches(pg_temp.error_of($$ SELECT * FROM api.schedule_expiry() $$) ->> 'hint', 'python -m pyapp expire-orders --every 60',
               'its hint names the worker');
SELECT api.record_expiry_run('worker', 0, '60 seconds');
SELECT is(pg_temp.state('worker'), 'running', 'a worker that just succeeded is running');
SELECT ok(pg_temp.check_ok(), 'expiry_running is ok while the worker runs (no_orders_stuck reports the order)');
SELECT matches(pg_temp.check_detail(), '^worker running: passes every 00:01:00', 'and names the worker');
UPDATE internal.expiry_run SET last_success_at = now() - interval '9 minutes' WHERE runner = 'worker';
SELECT is(pg_temp.state('worker'), 'running', 'it still counts 9 minutes later (at least 10 minutes)');
UPDATE internal.expiry_run SET last_success_at = now() - interval '11 minutes' WHERE runner = 'worker';
SELECT is(pg_temp.state('worker'), 'stopped', 'but not after 11 minutes: stopped');
SELECT api.record_expiry_run('manual', 0);
SELECT results_eq($$ SELECT state, running FROM api.expiry_status() WHERE runner = 'manual' $$,
                  $$ VALUES ('ran'::text, false) $$, 'a one-off pass is listed, and is no runner');
SELECT ok(NOT pg_temp.check_ok(), 'expiry_running fails: the worker stopped, a one-off pass does not count');

-- Scheduling with pg_cron (13)
SELECT pg_temp.pg_cron(true);
SELECT is(pg_temp.state('pg_cron'), 'off', 'where pg_cron is loaded and nothing is scheduled, pg_cron is off');
SELECT is(internal.expiry_job_name(), 'marketplace-expire-orders:' || current_database(), 'the job is named after the database');
SELECT results_eq($$ SELECT * FROM api.schedule_expiry(1, '30 minutes', 1000) $$,
                  $$ SELECT internal.expiry_job_name(), '* * * * *'::text,
                            'SELECT api.record_expiry_run(''pg_cron'', api.expire_pending_orders(interval ''30 minutes'', 1000), interval ''1 minute'')'::text,
                            current_database()::text COLLATE "default", 'postgres'::text $$,
                  'schedule_expiry returns the job: name, schedule, command, database, and pg_cron''s database');
SELECT results_eq($$ SELECT schedule, command FROM api.schedule_expiry(5, '45 minutes', 200) $$,
                  $$ VALUES ('*/5 * * * *'::text,
                             'SELECT api.record_expiry_run(''pg_cron'', api.expire_pending_orders(interval ''45 minutes'', 200), interval ''5 minutes'')'::text) $$,
                  'every 5 minutes, a 45-minute window, batches of 200');
SELECT results_eq($$ SELECT every, hold, batch_size, scheduled_at FROM internal.expiry_schedule $$,
                  $$ VALUES (interval '5 minutes', interval '45 minutes', 200, now()) $$,
                  'the database remembers one schedule, the latest');
SELECT results_eq($$ SELECT state, running FROM api.expiry_status() WHERE runner = 'pg_cron' $$,
                  $$ VALUES ('waiting'::text, true) $$, 'a job just scheduled is waiting for its first run, and counts');
SELECT ok(pg_temp.check_ok(), 'expiry_running is ok while the new job waits');
SELECT throws_ok($$ SELECT * FROM api.schedule_expiry(0) $$, 'MKV00', NULL, 'an interval of 0 minutes is MKV00');
SELECT throws_ok($$ SELECT * FROM api.schedule_expiry(60) $$, 'MKV00', NULL, 'an interval of 60 minutes is MKV00');
SELECT throws_ok($$ SELECT * FROM api.schedule_expiry(1, '-1 minute') $$, 'MKV00', NULL, 'a negative hold window is MKV00');
SELECT throws_ok($$ SELECT * FROM api.schedule_expiry(1, '30 minutes', 0) $$, 'MKV00', NULL, 'a batch of 0 is MKV00');
SELECT throws_ok($$ SELECT * FROM api.schedule_expiry(1, '30 minutes', 10001) $$, 'MKV00', NULL, 'a batch of 10001 is MKV00');
SELECT is((SELECT every FROM internal.expiry_schedule), interval '5 minutes', 'a refused call leaves the schedule as it was');

-- The job's command, run as pg_cron runs it (6)
SELECT is(pg_temp.run_job(), 1, 'the command expires the stale order and returns how many');
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT o FROM fx)), 'CANCELLED', 'the order is cancelled');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 10, 'and its 3 units are back');
SELECT results_eq($$ SELECT state, running, every, last_success_at, last_expired, runs FROM api.expiry_status()
                     WHERE runner = 'pg_cron' $$,
                  $$ VALUES ('running'::text, true, interval '5 minutes', now(), 1, 1::bigint) $$,
                  'pg_cron is running, with its last success and count');
SELECT ok(pg_temp.check_ok(), 'expiry_running is ok');
SELECT matches(pg_temp.check_detail(), '^pg_cron running: job marketplace-expire-orders:', 'and names the pg_cron job');

-- A scheduled job that does not run (5)
UPDATE internal.expiry_run SET last_success_at = now() - interval '11 minutes' WHERE runner = 'pg_cron';
UPDATE internal.expiry_schedule SET scheduled_at = now() - interval '1 hour';
SELECT is(pg_temp.state('pg_cron'), 'late', 'a job every 5 minutes that has not succeeded for 11 minutes is late');
SELECT ok(NOT pg_temp.check_ok(), 'expiry_running fails, though no order is past the hold window');
SELECT matches(pg_temp.check_detail(), 'pg_cron late: job .* has not succeeded within 00:10:00', 'the detail says why');
SELECT pg_temp.pg_cron(false);
SELECT is(pg_temp.state('pg_cron'), 'not_loaded', 'a scheduled job where pg_cron is no longer loaded: not_loaded');
SELECT matches((SELECT detail FROM api.expiry_status() WHERE runner = 'pg_cron'), 'pg_cron is not loaded on this server',
               'the detail says so');

-- Switching it off (6)
SELECT results_eq($$ SELECT * FROM api.unschedule_expiry() $$,
                  $$ SELECT internal.expiry_job_name(), 'postgres'::text, true $$,
                  'unschedule_expiry returns the recorded job and pg_cron''s database');
SELECT is_empty($$ SELECT * FROM internal.expiry_schedule $$, 'and forgets it');
SELECT results_eq($$ SELECT * FROM api.unschedule_expiry() $$,
                  $$ SELECT internal.expiry_job_name(), NULL::text, false $$,
                  'a second call: nothing was scheduled, and without pg_cron no database to look in');
SELECT is(pg_temp.state('pg_cron'), 'unavailable', 'pg_cron is unavailable again');
SELECT pg_temp.pg_cron(true);
SELECT api.record_expiry_run('pg_cron', 0, '1 minute');
SELECT results_eq($$ SELECT state, running FROM api.expiry_status() WHERE runner = 'pg_cron' $$,
                  $$ VALUES ('off'::text, false) $$, 'switched off, it is off, however recently its job succeeded');
SELECT ok(pg_temp.check_ok(), 'expiry_running is ok: nothing is scheduled and no unpaid order is past the window');

-- A role that may not see pg_cron's settings (1)
CREATE OR REPLACE FUNCTION internal.pg_cron_loaded(OUT loaded boolean, OUT cron_database text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS 'SELECT NULL::boolean, NULL::text';
SELECT matches(pg_temp.error_of($$ SELECT * FROM api.schedule_expiry() $$) ->> 'hint', 'GRANT pg_read_all_settings',
               'schedule_expiry says which privilege is missing');

SELECT * FROM finish();
ROLLBACK;
