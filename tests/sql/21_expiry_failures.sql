-- An order the expiry job cannot expire no longer holds back the others. A DBA's plain UPDATE sets
-- a product's stock to 2^31 - 1 while unpaid orders past the hold window hold units of it, so
-- returning them overflows (22003). api.expire_pending_orders skips those orders, records them
-- (api.expiry_failures), does not select them again for 10 minutes, and expires every other one;
-- integrity_report, evaluate_alerts and ops_snapshot report them until they are paid or expired.
BEGIN;
\ir lib/helpers.psql
SELECT plan(43);
-- The WARNING for each skipped order is the expected behaviour here; keep the TAP output clean.
SET LOCAL client_min_messages = error;

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS b1,
                               pg_temp.mk_user('BUYER') AS b2, pg_temp.mk_user('BUYER') AS b3;
ALTER TABLE fx ADD p text, ADD q text, ADD r text, ADD bad1 text, ADD bad2 text, ADD o3 text, ADD o4 text,
               ADD o5 text, ADD young text, ADD bad3 text, ADD o6 text, ADD o7 text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10), q = pg_temp.mk_product(seller, 10),
              r = pg_temp.mk_product(seller, 10);
UPDATE fx SET bad1 = pg_temp.mk_order(b1, p, 1);
UPDATE fx SET bad2 = pg_temp.mk_order(b2, p, 2);
UPDATE fx SET o3 = pg_temp.mk_order(b3, q, 3);
UPDATE fx SET o4 = pg_temp.mk_order(b1, q, 1);
UPDATE fx SET o5 = pg_temp.mk_order(b2, r, 2);
UPDATE fx SET young = pg_temp.mk_order(b3, q, 1);
-- The two bad orders are the oldest: they sit at the head of the expiry queue.
UPDATE "Order" SET "createdAt" = now() - interval '3 hours' WHERE id = (SELECT bad1 FROM fx);
UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = (SELECT bad2 FROM fx);
UPDATE "Order" SET "createdAt" = now() - interval '1 hour'
WHERE id IN (SELECT unnest(ARRAY[o3, o4, o5]) FROM fx);
-- The DBA's plain UPDATE (the ledger records it as an ADJUSTMENT).
UPDATE "Product" SET stock = 2147483647 WHERE id = (SELECT p FROM fx);
CREATE TEMP TABLE stale_before AS
SELECT count(*) AS n FROM "Order"
WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND "createdAt" < now() - interval '30 minutes';

-- Setup (2)
SELECT is_empty($$ SELECT * FROM api.expiry_failures() $$, 'setup: no expiry failure recorded yet');
SELECT throws_ok($$ SELECT api.cancel_order(bad1) FROM fx $$, '22003', NULL,
                 'setup: returning the unit of a bad order overflows the integer stock');

-- Batches of 1: the bad orders at the head are skipped, the queue moves on (8)
SELECT is(api.expire_pending_orders('30 minutes', 1), 0, 'a batch of 1 that holds the oldest bad order expires nothing');
SELECT results_eq($$ SELECT order_id, sqlstate, attempts FROM internal.expiry_failure $$,
                  $$ SELECT bad1, '22003'::text, 1 FROM fx $$, 'the order is recorded with SQLSTATE 22003, attempt 1');
SELECT is(api.expire_pending_orders('30 minutes', 1), 0, 'the next batch of 1 holds the other bad order, not the first again');
SELECT set_eq($$ SELECT order_id FROM api.expiry_failures() $$, $$ SELECT unnest(ARRAY[bad1, bad2]) FROM fx $$,
              'both bad orders are listed by api.expiry_failures()');
SELECT is(api.expire_pending_orders('30 minutes', 1), 1, 'the third batch of 1 expires a good order');
SELECT is(api.expire_pending_orders(), 2, 'the default batch expires the two good orders left');
SELECT is(api.expire_pending_orders(), 0, 'a run right after finds nothing: failed orders wait 10 minutes');
SELECT is((SELECT array_agg(attempts ORDER BY order_id) FROM internal.expiry_failure),
          ARRAY[1, 1], 'and they were not tried again');

-- Every other order expired, the bad ones untouched (6)
SELECT set_eq($$ SELECT id, status FROM "Order" WHERE id IN (SELECT unnest(ARRAY[bad1, bad2, o3, o4, o5, young]) FROM fx) $$,
              $$ SELECT bad1 AS id, 'PENDING_PAYMENT' AS status FROM fx UNION ALL SELECT bad2, 'PENDING_PAYMENT' FROM fx
                 UNION ALL SELECT o3, 'CANCELLED' FROM fx UNION ALL SELECT o4, 'CANCELLED' FROM fx
                 UNION ALL SELECT o5, 'CANCELLED' FROM fx UNION ALL SELECT young, 'PENDING_PAYMENT' FROM fx $$,
              'the good stale orders are CANCELLED; the bad ones and the young one are still unpaid');
SELECT is((SELECT count(*) FROM "Order"
           WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND "createdAt" < now() - interval '30 minutes'),
          2::bigint, 'only the two bad orders are left past the hold window');
SELECT is(pg_temp.stock_of((SELECT q FROM fx)), 9, 'q got back its 4 units (1 is held by the young order)');
SELECT is(pg_temp.stock_of((SELECT r FROM fx)), 10, 'r got back its 2 units');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 2147483647, 'p is untouched');
SELECT ok((SELECT bool_and(pg_temp.ledger_sum(x) = pg_temp.stock_of(x)) FROM fx, unnest(ARRAY[p, q, r]) x),
          'stock equals the ledger for every product');

-- What api.expiry_failures() says (3)
SELECT set_eq($$ SELECT order_id, sqlstate, attempts FROM api.expiry_failures() $$,
              $$ SELECT bad1, '22003'::text, 1 FROM fx UNION ALL SELECT bad2, '22003', 1 FROM fx $$,
              'one row per bad order, with its SQLSTATE and attempts');
SELECT ok((SELECT bool_and(message ~ 'out of range') FROM api.expiry_failures()), 'with the error message');
SELECT ok((SELECT bool_and(first_failed_at = now() AND last_failed_at = now()) FROM api.expiry_failures()),
          'and when it first and last failed');

-- The reports (6)
SELECT is((SELECT ok FROM api.integrity_report() WHERE check_name = 'expiry_failures'), false,
          'integrity_report fails the expiry_failures check');
SELECT matches((SELECT detail FROM api.integrity_report() WHERE check_name = 'expiry_failures'),
               (SELECT bad1 FROM fx), 'its detail names the order');
SELECT results_eq($$ SELECT severity, value, threshold, firing FROM api.evaluate_alerts() WHERE rule = 'expiry_failures' $$,
                  $$ VALUES ('warning'::text, 2::bigint, 0::bigint, true) $$, 'the expiry_failures alert is a firing warning');
SELECT is((api.ops_snapshot() ->> 'expiryFailed')::int, 2, 'ops_snapshot counts them as expiryFailed');
SELECT is((api.dashboard_stats() ->> 'expiryFailed')::int, 2, 'and so does the dashboard');
SELECT is((SELECT value FROM api.evaluate_alerts() WHERE rule = 'unpaid_past_hold'), 2::bigint,
          'they are still unpaid past the hold window, too');

-- Ten minutes later they are tried again, and fail again (3)
UPDATE internal.expiry_failure SET first_failed_at = now() - interval '20 minutes',
                                   last_failed_at = now() - interval '11 minutes';
SELECT is(api.expire_pending_orders(), 0, 'the retry expires nothing');
SELECT is((SELECT array_agg(attempts ORDER BY order_id) FROM api.expiry_failures()), ARRAY[2, 2],
          'each failure now counts 2 attempts');
SELECT ok((SELECT bool_and(last_failed_at = now() AND first_failed_at < last_failed_at) FROM api.expiry_failures()),
          'last_failed_at moved, first_failed_at stayed');

-- A failed order that is paid leaves the list (2)
SELECT api.record_payment(bad1, true, 'psp-late') FROM fx;
SELECT results_eq($$ SELECT order_id FROM api.expiry_failures() $$, $$ SELECT bad2 FROM fx $$,
                  'a paid order is no longer listed');
SELECT is((api.ops_snapshot() ->> 'expiryFailed')::int, 1, 'ops_snapshot follows');

-- The DBA repairs the stock: the next retry expires the last one (7)
UPDATE "Product" SET stock = 1000 WHERE id = (SELECT p FROM fx);
SELECT is(api.expire_pending_orders(), 0, 'within the 10 minutes it is still not retried');
UPDATE internal.expiry_failure SET last_failed_at = now() - interval '11 minutes';
SELECT is(api.expire_pending_orders(), 1, 'after them, the repaired order expires');
SELECT results_eq($$ SELECT status, "cancelReason" FROM "Order" WHERE id = (SELECT bad2 FROM fx) $$,
                  $$ VALUES ('CANCELLED'::text, 'EXPIRED'::text) $$, 'it is CANCELLED as EXPIRED');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 1002, 'its 2 units are back');
SELECT is_empty($$ SELECT * FROM api.expiry_failures() $$, 'nothing is listed any more');
SELECT is((SELECT ok FROM api.integrity_report() WHERE check_name = 'expiry_failures'), true,
          'the integrity check passes again');
SELECT is((SELECT firing FROM api.evaluate_alerts() WHERE rule = 'expiry_failures'), false, 'the alert is quiet');

-- A batch that fails as a whole is redone order by order within the same call (6)
UPDATE fx SET bad3 = pg_temp.mk_order(b1, q, 1);
UPDATE fx SET o6 = pg_temp.mk_order(b3, r, 1);
UPDATE fx SET o7 = pg_temp.mk_order(b1, r, 2);
UPDATE "Order" SET "createdAt" = now() - interval '1 hour' WHERE id IN (SELECT unnest(ARRAY[bad3, o6, o7]) FROM fx);
UPDATE "Product" SET stock = 2147483647 WHERE id = (SELECT q FROM fx);
SELECT is(api.expire_pending_orders(), 2, 'one call whose batch holds a bad order expires the two good ones');
SELECT set_eq($$ SELECT id, status FROM "Order" WHERE id IN (SELECT unnest(ARRAY[bad3, o6, o7, young]) FROM fx) $$,
              $$ SELECT bad3 AS id, 'PENDING_PAYMENT' AS status FROM fx UNION ALL SELECT o6, 'CANCELLED' FROM fx
                 UNION ALL SELECT o7, 'CANCELLED' FROM fx UNION ALL SELECT young, 'PENDING_PAYMENT' FROM fx $$,
              'the good ones are CANCELLED; the bad one and the young one are not');
SELECT results_eq($$ SELECT order_id, sqlstate, attempts FROM api.expiry_failures() $$,
                  $$ SELECT bad3, '22003'::text, 1 FROM fx $$, 'the bad one is recorded');
SELECT is(pg_temp.stock_of((SELECT r FROM fx)), 10, 'r got back the 3 units of the good ones');
SELECT is(pg_temp.stock_of((SELECT q FROM fx)), 2147483647, 'q is untouched');
SELECT ok((SELECT bool_and(pg_temp.ledger_sum(x) = pg_temp.stock_of(x)) FROM fx, unnest(ARRAY[p, q, r]) x),
          'stock equals the ledger for every product');

SELECT * FROM finish();
ROLLBACK;
