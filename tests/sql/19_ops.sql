-- The ops figures (ops_snapshot, record_checkout_stats, checkout_report, evaluate_alerts) against known rows.
BEGIN;
\ir lib/helpers.psql
SELECT plan(78);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p1 text, ADD p2 text, ADD p3 text;
UPDATE fx SET p1 = pg_temp.mk_product(seller, 3), p2 = pg_temp.mk_product(seller, 4), p3 = pg_temp.mk_product(seller, 0);
-- No DELIVERED order at all, so that one status certainly has zero orders (undone by the rollback).
UPDATE "Order" SET status = 'SHIPPED' WHERE status = 'DELIVERED';
-- The figures before this file adds anything: the database may already hold orders.
CREATE TEMP TABLE base AS
SELECT api.ops_snapshot('30 minutes') AS s30, api.ops_snapshot('1 hour') AS s60, api.ops_snapshot('5 minutes') AS s5,
       (SELECT jsonb_object_agg(rule, value) FROM api.evaluate_alerts('30 minutes', '1 hour')) AS alerts;
-- Orders of known status, age ("createdAt") and last change ("updatedAt"): by status PENDING_PAYMENT 3,
-- PAYMENT_FAILED 2, CANCELLED 2, PAID 1, SHIPPED 1; unpaid and created more than 30 minutes ago 2
-- (the one created exactly 30 minutes ago is not older than the hold), more than 1 hour ago 1, more
-- than 5 minutes ago 4; PAYMENT_FAILED or CANCELLED with "updatedAt" in the last hour 3.
INSERT INTO "Order" ("userId", status, total, "shippingAddress", "createdAt", "updatedAt")
SELECT buyer, v.status, 10, '{"city": "Oaxaca"}', now() - v.age, now() - v.changed
FROM fx, (VALUES ('PENDING_PAYMENT', interval '2 hours',    interval '2 hours'),
                 ('PAYMENT_FAILED',  interval '45 minutes', interval '10 minutes'),
                 ('PENDING_PAYMENT', interval '30 minutes', interval '30 minutes'),
                 ('PENDING_PAYMENT', interval '10 minutes', interval '10 minutes'),
                 ('PAYMENT_FAILED',  interval '0',          interval '0'),
                 ('CANCELLED',       interval '3 hours',    interval '2 hours'),
                 ('CANCELLED',       interval '20 minutes', interval '5 minutes'),
                 ('PAID',            interval '2 hours',    interval '2 hours'),
                 ('SHIPPED',         interval '1 day',      interval '1 day')) v (status, age, changed);

-- ops_snapshot: orders by status (4)
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(api.ops_snapshot() -> 'ordersByStatus') k),
          ARRAY['CANCELLED', 'DELIVERED', 'PAID', 'PAYMENT_FAILED', 'PENDING_PAYMENT', 'SHIPPED'],
          'every status of the contract is a key of ordersByStatus');
SELECT is(api.ops_snapshot() -> 'ordersByStatus' -> 'DELIVERED', '0'::jsonb, 'a status without orders is listed with 0');
SELECT is(api.ops_snapshot() -> 'ordersByStatus',
          (SELECT jsonb_object_agg(s, (s30 -> 'ordersByStatus' ->> s)::int + n) FROM base,
                  (VALUES ('PENDING_PAYMENT', 3), ('PAID', 1), ('PAYMENT_FAILED', 2), ('CANCELLED', 2),
                          ('SHIPPED', 1), ('DELIVERED', 0)) v (s, n)),
          'each status counts the baseline plus the orders inserted with it');
SELECT is(api.ops_snapshot() -> 'ordersByStatus',
          (SELECT jsonb_object_agg(s, (SELECT count(*) FROM "Order" o WHERE o.status = s))
           FROM unnest(ARRAY['PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'SHIPPED', 'DELIVERED']) s),
          'the counts equal a plain count per status');

-- ops_snapshot: unpaid past the hold, and the hold echoed (5)
SELECT is((api.ops_snapshot('30 minutes') ->> 'unpaidPastHold')::int, (SELECT (s30 ->> 'unpaidPastHold')::int + 2 FROM base),
          'hold 30 minutes: the PENDING_PAYMENT of 2 hours and the PAYMENT_FAILED of 45 minutes, not those of 30, 10 or 0 minutes nor PAID/CANCELLED');
SELECT is((api.ops_snapshot('1 hour') ->> 'unpaidPastHold')::int, (SELECT (s60 ->> 'unpaidPastHold')::int + 1 FROM base),
          'hold 1 hour: only the unpaid order of 2 hours');
SELECT is((api.ops_snapshot('5 minutes') ->> 'unpaidPastHold')::int, (SELECT (s5 ->> 'unpaidPastHold')::int + 4 FROM base),
          'hold 5 minutes: every unpaid order but the one created now');
SELECT is((api.ops_snapshot('90 seconds') ->> 'holdMinutes')::numeric, 1.5, 'holdMinutes echoes the hold in minutes');
SELECT is(api.ops_snapshot(), api.ops_snapshot('30 minutes'), 'the default hold is 30 minutes');

-- ops_snapshot: negative stock, possible only without the CHECK (1)
ALTER TABLE "Product" DROP CONSTRAINT "Product_stock_nonnegative";
UPDATE "Product" SET stock = -1 WHERE id = (SELECT p1 FROM fx);
UPDATE "Product" SET stock = -2 WHERE id = (SELECT p2 FROM fx);
SELECT is((api.ops_snapshot() ->> 'negativeStock')::int, (SELECT (s30 ->> 'negativeStock')::int + 2 FROM base),
          'the two products below 0 are counted, the one at 0 is not');

-- checkout_report: arguments, and a report over no recorded minute (4)
-- Only the minutes recorded below in internal.checkout_stats (cascading to checkout_latency; undone by the rollback).
DELETE FROM internal.checkout_stats;
SELECT throws_ok($$ SELECT api.checkout_report('0 minutes') $$, 'MKV00', NULL, 'a since of 0 is MKV00');
SELECT throws_ok($$ SELECT api.checkout_report('-1 hour') $$, 'MKV00', NULL, 'a negative since is MKV00');
SELECT throws_ok($$ SELECT api.checkout_report(NULL) $$, 'MKV00', NULL, 'a NULL since is MKV00');
SELECT is((SELECT jsonb_build_object('checkouts', r -> 'checkouts', 'successRate', r -> 'successRate',
                                     'retriesPerCheckout', r -> 'retriesPerCheckout', 'latencySeconds', r -> 'latencySeconds')
           FROM api.checkout_report('24 hours') r),
          '{"checkouts": 0, "successRate": null, "retriesPerCheckout": null,
            "latencySeconds": {"p50": null, "p95": null, "p99": null, "mean": null}}'::jsonb,
          'with no minute recorded: 0 checkouts, and NULL rates, percentiles and mean');

-- record_checkout_stats: recording and the upsert (5)
-- m0: the current minute; m1: 5 minutes earlier; m2: 7 minutes earlier (only ever in a rejected payload);
-- m_old: 2 hours earlier.
CREATE TEMP TABLE m AS
SELECT date_trunc('minute', now()) AS m0, date_trunc('minute', now()) - interval '5 minutes' AS m1,
       date_trunc('minute', now()) - interval '7 minutes' AS m2, date_trunc('minute', now()) - interval '2 hours' AS m_old;
SELECT is(api.record_checkout_stats(jsonb_build_array(
              jsonb_build_object('minute', m0, 'success', 3, 'insufficient_stock', 1, 'conflict', 1, 'empty_cart', 0,
                                 'error', 0, 'retries', 2, 'conflicts', 3, 'latency_sum_s', 0.3,
                                 'latency', '{"0.01": 0, "0.05": 4, "0.25": 1, "+Inf": 0}'::jsonb),
              jsonb_build_object('minute', m1, 'success', 2, 'error', 1, 'retries', 1, 'conflicts', 1, 'latency_sum_s', 0.05,
                                 'latency', '{"0.01": 1, "0.05": 2, "0.25": 0, "+Inf": 0}'::jsonb))), 2,
          'two minutes recorded: returns 2')
FROM m;
-- A second worker's flush of the same minute, stamped 30 seconds into it.
SELECT is(api.record_checkout_stats(jsonb_build_array(
              jsonb_build_object('minute', m0 + interval '30 seconds', 'success', 2, 'empty_cart', 1, 'retries', 1,
                                 'conflicts', 2, 'latency_sum_s', 0.2,
                                 'latency', '{"0.01": 0, "0.05": 2, "0.25": 1, "+Inf": 0}'::jsonb))), 1,
          'one minute recorded: returns 1')
FROM m;
SELECT results_eq($$ SELECT success, insufficient_stock, conflict, empty_cart, error, retries, conflicts,
                            round(latency_sum_s::numeric, 6)
                     FROM internal.checkout_stats WHERE minute = (SELECT m0 FROM m) $$,
                  $$ VALUES (5::bigint, 1::bigint, 1::bigint, 1::bigint, 0::bigint, 3::bigint, 5::bigint, 0.5::numeric) $$,
                  'the two flushes of the same minute add up (upsert), omitted counts being 0');
SELECT set_eq($$ SELECT minute, le, n FROM internal.checkout_latency $$,
              $$ SELECT m0, le, n FROM m, (VALUES (0.01::float8, 0::bigint), (0.05, 6), (0.25, 2), ('Infinity', 0)) b (le, n)
                 UNION ALL
                 SELECT m1, le, n FROM m, (VALUES (0.01::float8, 1::bigint), (0.05, 2), (0.25, 0), ('Infinity', 0)) b (le, n) $$,
              'latency buckets add up per minute and bound, "+Inf" stored as Infinity, zeros kept');
SELECT set_eq($$ SELECT minute FROM internal.checkout_stats $$, $$ SELECT m0 FROM m UNION ALL SELECT m1 FROM m $$,
              'a time 30 seconds into a minute is recorded under that minute: only m0 and m1 exist');

-- record_checkout_stats: an empty array, refusals, and a refused payload writes nothing (23)
CREATE TEMP TABLE before_refusals AS
SELECT (SELECT jsonb_agg(s ORDER BY minute) FROM internal.checkout_stats s) AS stats,
       (SELECT jsonb_agg(l ORDER BY minute, le) FROM internal.checkout_latency l) AS latency;
SELECT is(api.record_checkout_stats('[]'), 0, 'an empty array records nothing and returns 0');
SELECT throws_ok($$ SELECT api.record_checkout_stats('{"minute": "2026-05-01T12:34:00Z", "success": 1}') $$, 'MKV00', NULL,
                 'an object instead of an array is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats(NULL) $$, 'MKV00', NULL, 'NULL is MKV00');
SELECT is(pg_temp.error_of($$ SELECT api.record_checkout_stats('"stats"') $$) -> 'detail', '{"field": "stats"}'::jsonb,
          'a payload that is not an array names the field in the DETAIL');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[1]') $$, 'MKV00', NULL, 'an element that is not an object is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"success": 1}]') $$, 'MKV00', NULL, 'an element without minute is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "half past noon"}]') $$, 'MKV00', NULL,
                 'a minute that is not a timestamp is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "success": -1}]') $$, 'MKV00', NULL,
                 'a negative count for a new minute is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats(jsonb_build_array(jsonb_build_object('minute', m0, 'conflicts', -1))) FROM m $$,
                 'MKV00', NULL, 'a negative count for a recorded minute is MKV00 too (the upsert does not absorb it)');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "success": 1.5}]') $$, 'MKV00', NULL,
                 'a fractional count is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "latency_sum_s": -0.1}]') $$, 'MKV00', NULL,
                 'a negative latency_sum_s is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "latency": [1, 2]}]') $$, 'MKV00', NULL,
                 'a latency that is not an object is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "latency": {"0.05": -1}}]') $$, 'MKV00', NULL,
                 'a negative bucket count is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "latency": {"0": 1}}]') $$, 'MKV00', NULL,
                 'a bucket bound of 0 is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "latency": {"fast": 1}}]') $$, 'MKV00', NULL,
                 'a bucket bound that is not a number is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "latency_sum_s": "NaN"}]') $$, 'MKV00', NULL,
                 'a NaN latency_sum_s is MKV00 (NaN would pass CHECK (latency_sum_s >= 0))');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "2026-05-01T12:34:00Z", "latency": {"NaN": 1}}]') $$, 'MKV00', NULL,
                 'a NaN bucket bound is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats('[{"minute": "infinity", "success": 1}]') $$, 'MKV00', NULL,
                 'an infinite minute is MKV00');
SELECT throws_ok($$ SELECT api.record_checkout_stats(jsonb_build_array(jsonb_build_object('minute', now() + interval '2 days', 'success', 1))) $$,
                 'MKV00', NULL, 'a minute two days ahead is MKV00');
-- Element 1 is malformed; element 2 (m2) is valid and, sorting first by minute, is written before 1 is read.
CREATE TEMP TABLE bad AS
SELECT format('SELECT api.record_checkout_stats(%L)',
              jsonb_build_array(jsonb_build_object('minute', 'not a time', 'success', 1),
                                jsonb_build_object('minute', m2, 'success', 4, 'latency', '{"0.05": 4}'::jsonb))) AS q
FROM m;
SELECT throws_ok((SELECT q FROM bad), 'MKV00', NULL, 'a payload with one malformed element is MKV00');
SELECT is(pg_temp.error_of((SELECT q FROM bad)) -> 'detail', '{"field": "stats", "element": 1}'::jsonb,
          'the DETAIL names the malformed element by its position in the array');
SELECT is_empty($$ SELECT 1 FROM internal.checkout_stats WHERE minute = (SELECT m2 FROM m) $$,
                'the valid element of the refused payload was not recorded');
SELECT is((SELECT jsonb_build_object('stats', (SELECT jsonb_agg(s ORDER BY minute) FROM internal.checkout_stats s),
                                     'latency', (SELECT jsonb_agg(l ORDER BY minute, le) FROM internal.checkout_latency l))),
          (SELECT jsonb_build_object('stats', stats, 'latency', latency) FROM before_refusals),
          'after every refusal both tables are exactly as before');

-- checkout_report: figures over 10 minutes (m0 and m1; m_old is 2 hours back) (10)
SELECT api.record_checkout_stats(jsonb_build_array(
           jsonb_build_object('minute', m_old, 'success', 100, 'retries', 40, 'conflicts', 50, 'latency_sum_s', 500,
                              'latency', '{"0.01": 0, "0.05": 0, "0.25": 0, "+Inf": 100}'::jsonb)))
FROM m;
CREATE TEMP TABLE rep AS SELECT api.checkout_report('10 minutes') AS r;
SELECT is((SELECT r -> 'byOutcome' FROM rep),
          '{"success": 7, "insufficient_stock": 1, "conflict": 1, "empty_cart": 1, "client_error": 0, "maintenance": 0,
            "error": 1}'::jsonb,
          'checkouts by outcome are summed over m0 (both flushes) and m1');
SELECT is((SELECT r -> 'checkouts' FROM rep), '11'::jsonb, 'checkouts is the sum of the outcomes');
SELECT is((SELECT jsonb_build_object('retries', r -> 'retries', 'concurrencyErrors', r -> 'concurrencyErrors') FROM rep),
          '{"retries": 4, "concurrencyErrors": 6}'::jsonb, 'retries and ConcurrencyErrors (conflicts) are summed');
SELECT is((SELECT ARRAY[(r ->> 'successRate')::numeric, (r ->> 'retriesPerCheckout')::numeric,
                        (r -> 'latencySeconds' ->> 'mean')::numeric] FROM rep),
          ARRAY[0.8000, 0.3636, 0.0550],
          'success rate 1 - 2/10 and mean latency 0.55 s/10 (over the 10 decided: not the empty cart), retries per checkout 4/11');
SELECT ok((SELECT (r -> 'latencySeconds' ->> 'p50')::numeric BETWEEN 0.01 AND 0.05 FROM rep),
          'P50 (rank 5.5 of 11: 1 at <= 0.01 s, 8 at <= 0.05 s, 2 at <= 0.25 s) lies in the bucket (0.01, 0.05]');
SELECT ok((SELECT (r -> 'latencySeconds' ->> 'p95')::numeric BETWEEN 0.05 AND 0.25 FROM rep),
          'P95 (rank 10.45 of 11) lies in the bucket (0.05, 0.25], not in the overflow of m_old');
SELECT ok((SELECT (r -> 'latencySeconds' ->> 'p99')::numeric BETWEEN (r -> 'latencySeconds' ->> 'p95')::numeric AND 0.25 FROM rep),
          'P99 lies between P95 and 0.25');
SELECT is((SELECT ARRAY[(r ->> 'from')::timestamptz, (r ->> 'until')::timestamptz] FROM rep),
          ARRAY[date_trunc('minute', now() - interval '10 minutes'), now()],
          'the window runs from the start of the minute of now() - 10 minutes until now()');
SELECT is((SELECT r -> 'ordersByStatus' FROM api.checkout_report('1 hour') r),
          (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM "Order"
                                                    WHERE "createdAt" >= date_trunc('minute', now() - interval '1 hour')
                                                    GROUP BY status) o),
          'ordersByStatus counts the orders created in the window');
SELECT is((SELECT r -> 'negativeStock' FROM api.checkout_report('1 hour') r),
          (SELECT to_jsonb((s30 ->> 'negativeStock')::int + 2) FROM base), 'negativeStock counts the products below 0');

-- checkout_report: minutes outside the window are not counted; minutes are whole (3)
SELECT is((SELECT r -> 'byOutcome' FROM api.checkout_report('4 minutes') r),
          '{"success": 5, "insufficient_stock": 1, "conflict": 1, "empty_cart": 1, "client_error": 0, "maintenance": 0,
            "error": 0}'::jsonb,
          'over 4 minutes only m0 counts: m1 (5 minutes back) is outside');
SELECT is((SELECT r -> 'checkouts' FROM api.checkout_report('5 minutes') r), '11'::jsonb,
          'over 5 minutes m1 counts: the window starts at the minute that contains now() - 5 minutes');
SELECT is((SELECT ARRAY[(r ->> 'checkouts')::numeric, (r -> 'latencySeconds' ->> 'p50')::numeric]
           FROM api.checkout_report('3 hours') r), ARRAY[111, 0.25],
          'over 3 hours m_old counts too (its 100 checkouts in the overflow put P50 at the highest finite bound)');

-- evaluate_alerts: the rules and their values (3)
CREATE TEMP TABLE want AS
SELECT (alerts ->> 'negative_stock')::bigint + 2 AS neg, 6::bigint AS conc,
       (alerts ->> 'failed_or_cancelled_orders')::bigint + 3 AS fc, (alerts ->> 'unpaid_past_hold')::bigint + 2 AS unpaid,
       (alerts ->> 'expiry_failures')::bigint AS ef
FROM base;
SELECT results_eq($$ SELECT rule, severity FROM api.evaluate_alerts() $$,
                  $$ VALUES ('negative_stock', 'critical'), ('concurrency_errors', 'warning'),
                            ('failed_or_cancelled_orders', 'warning'), ('unpaid_past_hold', 'warning'),
                            ('expiry_failures', 'warning') $$,
                  'one row per rule, in order, with its severity');
SELECT set_eq($$ SELECT rule, value FROM api.evaluate_alerts('30 minutes', '1 hour') $$,
              $$ SELECT r, v FROM want, LATERAL (VALUES ('negative_stock', neg), ('concurrency_errors', conc),
                                                        ('failed_or_cancelled_orders', fc), ('unpaid_past_hold', unpaid),
                                                        ('expiry_failures', ef)) x (r, v) $$,
              'values: products below 0, conflicts of m0 and m1 (not m_old), orders failed or cancelled in the hour, unpaid past the hold, expiry failures (none added here)');
SELECT set_eq($$ SELECT rule, threshold FROM api.evaluate_alerts() $$,
              $$ VALUES ('negative_stock', 0::bigint), ('concurrency_errors', 100), ('failed_or_cancelled_orders', 50),
                        ('unpaid_past_hold', 0), ('expiry_failures', 0) $$,
              'the default thresholds are 0, 100, 50, 0 and 0');

-- evaluate_alerts: a rule fires exactly when value > threshold (2); expiry_failures has no
-- threshold argument (tests/sql/21_expiry_failures.sql drives it)
SELECT set_eq($$ SELECT e.rule, e.threshold, e.firing
                 FROM want, api.evaluate_alerts('30 minutes', '1 hour', neg - 1, conc - 1, fc - 1, unpaid - 1) e
                 WHERE e.rule <> 'expiry_failures' $$,
              $$ SELECT r, t, true FROM want, LATERAL (VALUES ('negative_stock', neg - 1), ('concurrency_errors', conc - 1),
                                                              ('failed_or_cancelled_orders', fc - 1),
                                                              ('unpaid_past_hold', unpaid - 1)) x (r, t) $$,
              'with every threshold one below its value, every rule fires');
SELECT set_eq($$ SELECT e.rule, e.threshold, e.firing
                 FROM want, api.evaluate_alerts('30 minutes', '1 hour', neg, conc, fc, unpaid) e
                 WHERE e.rule <> 'expiry_failures' $$,
              $$ SELECT r, t, false FROM want, LATERAL (VALUES ('negative_stock', neg), ('concurrency_errors', conc),
                                                               ('failed_or_cancelled_orders', fc),
                                                               ('unpaid_past_hold', unpaid)) x (r, t) $$,
              'with every threshold equal to its value, none fires');

-- evaluate_alerts: the ConcurrencyErrors window counts a minute when any part of it lies in the window (2)
SELECT is((SELECT value FROM api.evaluate_alerts('30 minutes', '3 minutes') WHERE rule = 'concurrency_errors'), 5::bigint,
          'over 3 minutes only m0 (5 conflicts) counts: m1 ended 4 minutes back');
SELECT is((SELECT ARRAY[(SELECT value FROM api.evaluate_alerts('30 minutes', now() - (m1 + interval '1 minute'))
                         WHERE rule = 'concurrency_errors'),
                        (SELECT value FROM api.evaluate_alerts('30 minutes', now() - (m1 + interval '1 minute') + interval '1 second')
                         WHERE rule = 'concurrency_errors')] FROM m),
          ARRAY[5, 6]::bigint[], 'm1 is left out by a window that starts where it ends, and counted by one a second longer');

-- evaluate_alerts: arguments (13)
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts(NULL, '1 hour') $$, 'MKV00', NULL, 'a NULL hold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', NULL) $$, 'MKV00', NULL, 'a NULL window is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('-1 minute', '1 hour') $$, 'MKV00', NULL, 'a negative hold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '-1 hour') $$, 'MKV00', NULL, 'a negative window is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '1 hour', -1, 100, 50, 0) $$, 'MKV00', NULL,
                 'a negative negative_stock threshold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '1 hour', 0, -1, 50, 0) $$, 'MKV00', NULL,
                 'a negative concurrency_errors threshold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '1 hour', 0, 100, -1, 0) $$, 'MKV00', NULL,
                 'a negative failed_or_cancelled_orders threshold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '1 hour', 0, 100, 50, -1) $$, 'MKV00', NULL,
                 'a negative unpaid_past_hold threshold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '1 hour', NULL, NULL, NULL, NULL) $$, 'MKV00', NULL,
                 'all thresholds NULL is MKV00');
-- One NULL threshold among others is refused too (least() alone would skip it).
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '1 hour', NULL, 100, 50, 0) $$, 'MKV00', NULL,
                 'a NULL negative_stock threshold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '1 hour', 0, 100, 50, NULL) $$, 'MKV00', NULL,
                 'a NULL unpaid_past_hold threshold is MKV00');
SELECT throws_ok($$ SELECT * FROM api.evaluate_alerts('30 minutes', '0 minutes') $$, 'MKV00', NULL,
                 'a window of 0 is MKV00 (it would count nothing)');
SELECT lives_ok($$ SELECT * FROM api.evaluate_alerts('0 minutes', '1 hour', 0, 0, 0, 0) $$,
                'a hold of 0 and thresholds of 0 are accepted (non-negative)');

-- A minute ahead of now() (a worker's clock running fast) is kept, but no report counts it before its time (3)
CREATE TEMP TABLE before_future AS
SELECT (api.checkout_report('1 hour') ->> 'checkouts')::bigint AS checkouts,
       (SELECT value FROM api.evaluate_alerts('30 minutes', '1 hour') WHERE rule = 'concurrency_errors') AS conflicts;
SELECT is(api.record_checkout_stats(jsonb_build_array(jsonb_build_object(
              'minute', date_trunc('minute', now() + interval '10 minutes'), 'success', 9, 'conflicts', 9))), 1,
          'a minute 10 minutes ahead is recorded');
SELECT is((api.checkout_report('1 hour') ->> 'checkouts')::bigint, (SELECT checkouts FROM before_future),
          'checkout_report leaves out minutes after now()');
SELECT is((SELECT value FROM api.evaluate_alerts('30 minutes', '1 hour') WHERE rule = 'concurrency_errors'),
          (SELECT conflicts FROM before_future), 'the concurrency_errors rule leaves them out too');

SELECT * FROM finish();
ROLLBACK;
