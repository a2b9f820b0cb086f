-- api.deploy_verdict: the deployment checklist's targets (success rate > 95 %, checkout P95 < 2 s,
-- ConcurrencyError rate < 1 %) judged PASS, WARN or FAIL over windows of known per-minute figures;
-- and api.checkout_report's rates over the checkouts the server decided.
BEGIN;
\ir lib/helpers.psql
SELECT plan(33);

-- Only the minutes recorded here count (undone by the rollback).
DELETE FROM internal.checkout_stats;

-- Replaces the recorded figures with one minute, p_ago back (by default inside a 1-hour window),
-- made of p_stats (checkout_stats columns) and, unless p_latency is given, every decided checkout
-- in the 0.05 s bucket.
CREATE FUNCTION pg_temp.window_of(p_stats jsonb, p_latency jsonb DEFAULT NULL, p_ago interval DEFAULT '10 minutes')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM internal.checkout_stats;
    PERFORM api.record_checkout_stats(jsonb_build_array(p_stats || jsonb_build_object(
        'minute', date_trunc('minute', now()) - p_ago,
        'latency', coalesce(p_latency, jsonb_build_object('0.05',
            coalesce((p_stats ->> 'success')::int, 0) + coalesce((p_stats ->> 'insufficient_stock')::int, 0)
            + coalesce((p_stats ->> 'conflict')::int, 0) + coalesce((p_stats ->> 'error')::int, 0),
            '+Inf', 0)))));
END
$$;

-- One check of a verdict by name.
CREATE FUNCTION pg_temp.check_of(p_verdict jsonb, p_name text)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT c FROM jsonb_array_elements(p_verdict -> 'checks') c WHERE c ->> 'name' = p_name
$$;

-- A verdict's statuses: [overall, successRate, p95LatencySeconds, concurrencyErrorRate].
CREATE FUNCTION pg_temp.statuses(p_verdict jsonb)
RETURNS text[] LANGUAGE sql AS $$
    SELECT ARRAY[p_verdict ->> 'status',
                 pg_temp.check_of(p_verdict, 'successRate') ->> 'status',
                 pg_temp.check_of(p_verdict, 'p95LatencySeconds') ->> 'status',
                 pg_temp.check_of(p_verdict, 'concurrencyErrorRate') ->> 'status']
$$;

-- Arguments (4)
SELECT throws_ok($$ SELECT api.deploy_verdict('0 minutes') $$, 'MKV00', NULL, 'a since of 0 is MKV00');
SELECT throws_ok($$ SELECT api.deploy_verdict(NULL) $$, 'MKV00', NULL, 'a NULL since is MKV00');
SELECT throws_ok($$ SELECT api.deploy_verdict('1 hour', 0) $$, 'MKV00', NULL, 'a minimum of 0 checkouts is MKV00');
SELECT is(pg_temp.error_of($$ SELECT api.deploy_verdict('1 hour', NULL) $$) -> 'detail', '{"field": "min_checkouts"}'::jsonb,
          'a NULL minimum is MKV00 naming min_checkouts');

-- The targets, in one place (2)
SELECT is((SELECT jsonb_agg(jsonb_build_object('name', c ->> 'name', 'op', c ->> 'op', 'threshold', c -> 'threshold',
                                               'warnAt', c -> 'warnAt', 'unit', c ->> 'unit'))
           FROM jsonb_array_elements(api.deploy_verdict() -> 'checks') c),
          '[{"name": "successRate", "op": ">", "threshold": 0.95, "warnAt": 0.96, "unit": "ratio"},
            {"name": "p95LatencySeconds", "op": "<", "threshold": 2, "warnAt": 1.6, "unit": "seconds"},
            {"name": "concurrencyErrorRate", "op": "<", "threshold": 0.01, "warnAt": 0.008, "unit": "ratio"}]'::jsonb,
          'success rate > 95 % (warn at 96 %), P95 < 2 s (warn at 1.6 s), ConcurrencyError rate < 1 % (warn at 0.8 %)');
SELECT is((SELECT ARRAY[v ->> 'minCheckouts', v ->> 'since'] FROM api.deploy_verdict() v), ARRAY['200', '01:00:00'],
          'by default: the last hour, at least 200 checkouts');

-- No checkout at all: WARN, not PASS (3)
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['WARN', 'WARN', 'WARN', 'WARN'], 'an empty window is WARN throughout');
SELECT is((SELECT ARRAY[v ->> 'insufficientData', v ->> 'decidedCheckouts'] FROM api.deploy_verdict() v), ARRAY['true', '0'],
          'and says why: insufficient data, 0 checkouts');
SELECT is(pg_temp.check_of(api.deploy_verdict(), 'successRate') ->> 'reason', 'insufficient data: 0 of 200 checkouts',
          'each check gives the reason');

-- A healthy window: PASS; client errors and maintenance neither help nor hurt (6)
SELECT pg_temp.window_of('{"success": 195, "insufficient_stock": 5, "conflicts": 1}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['PASS', 'PASS', 'PASS', 'PASS'], '200 good checkouts: PASS');
SELECT is((SELECT ARRAY[(pg_temp.check_of(v, 'successRate') ->> 'value')::numeric,
                        (pg_temp.check_of(v, 'p95LatencySeconds') ->> 'value')::numeric,
                        (pg_temp.check_of(v, 'concurrencyErrorRate') ->> 'value')::numeric] FROM api.deploy_verdict() v),
          ARRAY[1, 0.0475, 0.005]::numeric[],
          'measured: success 100 % (insufficient stock is a correct answer), P95 0.0475 s (rank 190 of 200 in (0, 0.05]), 1 ConcurrencyError in 200');
SELECT is((SELECT ARRAY[(c ->> 'value')::numeric, (c ->> 'threshold')::numeric] FROM jsonb_array_elements(api.deploy_verdict() -> 'checks') c
           WHERE c ->> 'name' = 'successRate'),
          (SELECT ARRAY[(r ->> 'successRate')::numeric, 0.95] FROM api.checkout_report('1 hour') r),
          'the verdict judges the figures api.checkout_report gives');
SELECT pg_temp.window_of('{"success": 195, "insufficient_stock": 5, "conflicts": 1, "client_error": 5000, "maintenance": 800, "empty_cart": 300}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['PASS', 'PASS', 'PASS', 'PASS'],
          'the same window plus 5000 expired tokens, 800 maintenance 503s and 300 empty carts: still PASS');
SELECT is((SELECT ARRAY[(r ->> 'successRate')::numeric, (r ->> 'concurrencyErrorRate')::numeric,
                        (r ->> 'decidedCheckouts')::numeric, (r ->> 'checkouts')::numeric]
           FROM api.checkout_report('1 hour') r),
          ARRAY[1, 0.005, 200, 6300]::numeric[],
          'report: success rate and ConcurrencyError rate over the 200 decided checkouts of 6300');
SELECT is((SELECT r -> 'byOutcome' FROM api.checkout_report('1 hour') r),
          '{"success": 195, "insufficient_stock": 5, "conflict": 0, "error": 0, "empty_cart": 300,
            "client_error": 5000, "maintenance": 800}'::jsonb, 'byOutcome lists every outcome');

-- Success rate: WARN from 80 % of the way to the threshold (96 %), FAIL at 95 % (4)
SELECT pg_temp.window_of('{"success": 190, "insufficient_stock": 2, "error": 8}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['WARN', 'WARN', 'PASS', 'PASS'],
          '8 of 200 failed (96 %): WARN');
SELECT is(pg_temp.check_of(api.deploy_verdict(), 'successRate') ->> 'reason', 'at least 80 % of the way to the threshold',
          'the reason of a WARN near the threshold');
SELECT pg_temp.window_of('{"success": 191, "insufficient_stock": 2, "error": 7}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['PASS', 'PASS', 'PASS', 'PASS'], '7 of 200 failed (96.5 %): PASS');
SELECT pg_temp.window_of('{"success": 190, "error": 10}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['FAIL', 'FAIL', 'PASS', 'PASS'],
          '10 of 200 failed (95 %, not above it): FAIL');

-- P95 from the persisted histogram (3)
SELECT pg_temp.window_of('{"success": 200}', '{"1.0": 180, "2.5": 20, "+Inf": 0}');
SELECT is((SELECT ARRAY[pg_temp.check_of(v, 'p95LatencySeconds') ->> 'value', pg_temp.check_of(v, 'p95LatencySeconds') ->> 'status']
           FROM api.deploy_verdict() v), ARRAY['1.7500', 'WARN'], 'P95 1.75 s (rank 190: halfway into (1, 2.5]): WARN');
SELECT pg_temp.window_of('{"success": 200}', '{"1.0": 170, "2.5": 30, "+Inf": 0}');
SELECT is((SELECT ARRAY[pg_temp.check_of(v, 'p95LatencySeconds') ->> 'value', pg_temp.check_of(v, 'p95LatencySeconds') ->> 'status']
           FROM api.deploy_verdict() v), ARRAY['2.0000', 'FAIL'], 'P95 2 s (not below it): FAIL');
SELECT is(api.deploy_verdict() ->> 'status', 'FAIL', 'one FAIL makes the verdict FAIL');

-- ConcurrencyError rate: every ConcurrencyError over the decided checkouts (3)
SELECT pg_temp.window_of('{"success": 250, "conflicts": 2}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['WARN', 'PASS', 'PASS', 'WARN'], '2 in 250 (0.8 %): WARN');
SELECT pg_temp.window_of('{"success": 200, "conflicts": 2, "client_error": 1000}');
SELECT is((SELECT ARRAY[pg_temp.check_of(v, 'concurrencyErrorRate') ->> 'value', pg_temp.check_of(v, 'concurrencyErrorRate') ->> 'status']
           FROM api.deploy_verdict() v), ARRAY['0.0100', 'FAIL'],
          '2 in 200 (1 %): FAIL, whatever the client errors beside them');
SELECT pg_temp.window_of('{"success": 300, "conflicts": 5, "retries": 4}');
SELECT is(pg_temp.check_of(api.deploy_verdict(), 'concurrencyErrorRate') ->> 'status', 'FAIL',
          'retried attempts count: 5 ConcurrencyErrors in 300 checkouts (1.67 %) though every checkout succeeded');

-- Too few checkouts (6)
SELECT pg_temp.window_of('{"success": 150, "error": 2, "conflicts": 1}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['WARN', 'WARN', 'WARN', 'WARN'],
          '152 checkouts, below the 200 needed: WARN (insufficient data), not PASS');
SELECT is(pg_temp.check_of(api.deploy_verdict(), 'p95LatencySeconds') ->> 'reason', 'insufficient data: 152 of 200 checkouts',
          'the reason names the count and the minimum');
SELECT is(pg_temp.statuses(api.deploy_verdict('1 hour', 150)), ARRAY['PASS', 'PASS', 'PASS', 'PASS'],
          'with a minimum of 150 the same window is judged: PASS');
SELECT pg_temp.window_of('{"success": 30, "error": 10}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['FAIL', 'FAIL', 'WARN', 'WARN'],
          '10 of 40 failed: FAIL though the data are few, as 10 of 200 would fail too');
SELECT alike(pg_temp.check_of(api.deploy_verdict(), 'successRate') ->> 'reason', 'misses the target even counted against 200 checkouts%',
             'and says so');
SELECT pg_temp.window_of('{"success": 30, "error": 9, "conflicts": 1}');
SELECT is(pg_temp.statuses(api.deploy_verdict()), ARRAY['WARN', 'WARN', 'WARN', 'WARN'],
          '9 of 39 failed and one ConcurrencyError: WARN, as 9 or 1 of 200 could still pass');

-- The window (2)
SELECT pg_temp.window_of('{"success": 150, "error": 20}', NULL, '2 hours');
SELECT is((SELECT v ->> 'decidedCheckouts' FROM api.deploy_verdict('1 hour') v), '0', 'minutes before the window are left out');
SELECT is(pg_temp.statuses(api.deploy_verdict('24 hours')), ARRAY['FAIL', 'FAIL', 'WARN', 'WARN'],
          'the 24-hour check sees them, with the same targets');

SELECT * FROM finish();
ROLLBACK;
