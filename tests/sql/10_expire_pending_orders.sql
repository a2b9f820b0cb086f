-- api.expire_pending_orders: cancels unpaid orders older than the hold window, returns their stock
-- exactly once with the reason EXPIRED or PAYMENT_FAILED_EXPIRED, and returns how many.
BEGIN;
\ir lib/helpers.psql
SELECT plan(20);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p text, ADD old_pending text, ADD old_failed text, ADD young text, ADD old_paid text,
               ADD old_cancelled text;
UPDATE fx SET p = pg_temp.mk_product(seller, 20);
UPDATE fx SET old_pending = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET old_failed = pg_temp.mk_order(buyer, p, 2);
UPDATE fx SET young = pg_temp.mk_order(buyer, p, 3);
UPDATE fx SET old_paid = pg_temp.mk_order(buyer, p, 4);
UPDATE fx SET old_cancelled = pg_temp.mk_order(buyer, p, 5);
SELECT api.record_payment(old_failed, false), api.record_payment(old_paid, true), api.cancel_order(old_cancelled)
FROM fx;
UPDATE "Order" SET "createdAt" = now() - interval '1 hour'
WHERE id IN (SELECT unnest(ARRAY[old_pending, old_failed, old_paid, old_cancelled]) FROM fx);
UPDATE "Order" SET "createdAt" = now() - interval '10 minutes' WHERE id = (SELECT young FROM fx);
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 10, 'setup: 10 of 20 units held by orders');

-- The default 30-minute window (9)
SELECT is(api.expire_pending_orders(), 2, 'it expires the two unpaid orders older than 30 minutes and says so');
SELECT set_eq($$ SELECT id, status FROM "Order" $$,
              $$ SELECT old_pending AS id, 'CANCELLED' AS status FROM fx UNION ALL SELECT old_failed, 'CANCELLED' FROM fx
                 UNION ALL SELECT young, 'PENDING_PAYMENT' FROM fx UNION ALL SELECT old_paid, 'PAID' FROM fx
                 UNION ALL SELECT old_cancelled, 'CANCELLED' FROM fx $$,
              'only the old unpaid orders changed: young, paid and cancelled ones kept their status');
SELECT results_eq($$ SELECT "cancelReason" FROM "Order" WHERE id = (SELECT old_pending FROM fx) $$,
                  $$ VALUES ('EXPIRED'::text) $$, 'an expired pending order''s reason is EXPIRED');
SELECT results_eq($$ SELECT "cancelReason" FROM "Order" WHERE id = (SELECT old_failed FROM fx) $$,
                  $$ VALUES ('PAYMENT_FAILED_EXPIRED'::text) $$, 'an expired failed order''s reason is PAYMENT_FAILED_EXPIRED');
SELECT set_eq($$ SELECT "orderId", delta, reason FROM "StockLedger" WHERE delta > 0 AND reason <> 'OPENING_BALANCE'
                 AND reason <> 'CANCEL' $$,
              $$ SELECT old_pending AS oid, 1 AS delta, 'EXPIRED' AS reason FROM fx
                 UNION ALL SELECT old_failed, 2, 'PAYMENT_FAILED_EXPIRED' FROM fx $$,
              'one ledger row per expired order with its reason and order id');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 13, 'their 3 units are back');
SELECT is(api.expire_pending_orders(), 0, 'a second run finds nothing');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 13, 'and returns nothing twice');
SELECT throws_ok($$ SELECT api.cancel_order((SELECT old_pending FROM fx)) $$, 'MKS09', NULL,
                 'an expired order can no longer be cancelled');

-- A shorter window, and batches (5)
SELECT is(api.expire_pending_orders('1 minute'), 1, 'a 1-minute window also expires the 10-minute-old order');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 16, 'and returns its 3 units');
CREATE TEMP TABLE more AS SELECT pg_temp.mk_order(buyer, p, 1) AS id FROM fx, generate_series(1, 3);
UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id IN (SELECT id FROM more);
SELECT is(api.expire_pending_orders('30 minutes', 2), 2, 'a batch of 2 expires 2 of 3');
SELECT is(api.expire_pending_orders('30 minutes', 2), 1, 'the next batch the last one');
SELECT is(api.expire_pending_orders('0 seconds'), 0, 'nothing unpaid is left, whatever the window');

-- Bad arguments (4)
SELECT throws_ok($$ SELECT api.expire_pending_orders('-1 minute') $$, 'MKV00', NULL, 'a negative window is MKV00');
SELECT throws_ok($$ SELECT api.expire_pending_orders(NULL) $$, 'MKV00', NULL, 'a NULL window is MKV00');
SELECT throws_ok($$ SELECT api.expire_pending_orders('30 minutes', 0) $$, 'MKV00', NULL, 'batch size 0 is MKV00');
SELECT throws_ok($$ SELECT api.expire_pending_orders('30 minutes', 10001) $$, 'MKV00', NULL, 'batch size 10001 is MKV00');

-- Invariant (1)
SELECT is(pg_temp.ledger_sum((SELECT p FROM fx)), pg_temp.stock_of((SELECT p FROM fx)), 'stock equals the ledger');

SELECT * FROM finish();
ROLLBACK;
