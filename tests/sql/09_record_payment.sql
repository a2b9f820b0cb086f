-- api.record_payment: PENDING_PAYMENT -> PAID or PAYMENT_FAILED; repeats change nothing.
BEGIN;
\ir lib/helpers.psql
SELECT plan(20);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p text, ADD o1 text, ADD o2 text, ADD o3 text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10);
UPDATE fx SET o1 = pg_temp.mk_order(buyer, p, 2);
UPDATE fx SET o2 = pg_temp.mk_order(buyer, p, 3);
UPDATE fx SET o3 = pg_temp.mk_order(buyer, p, 1);

-- Success (5)
CREATE TEMP TABLE r1 AS SELECT api.record_payment(o1, true, 'ref-1') AS j FROM fx;
SELECT is((SELECT j ->> 'status' FROM r1), 'PAID', 'a success makes the order PAID');
SELECT is((SELECT j -> 'changed' FROM r1), 'true'::jsonb, 'and says "changed": true');
SELECT results_eq($$ SELECT "paymentReference", "paidAt" FROM "Order" WHERE id = (SELECT o1 FROM fx) $$,
                  $$ VALUES ('ref-1'::text, now()) $$, 'the reference and payment time are stored');
SELECT is((SELECT api.record_payment(o1, true, 'ref-1') -> 'changed' FROM fx), 'false'::jsonb,
          'a repeated success is a no-op ("changed": false)');
SELECT is((SELECT api.record_payment(o1, false) ->> 'status' FROM fx), 'PAID', 'a failure after PAID changes nothing');

-- Failure keeps the stock held, and a retry may still succeed (7)
CREATE TEMP TABLE r2 AS SELECT api.record_payment(o2, false, 'ref-2') AS j FROM fx;
SELECT is((SELECT j ->> 'status' FROM r2), 'PAYMENT_FAILED', 'a failure makes the order PAYMENT_FAILED');
SELECT is((SELECT j -> 'changed' FROM r2), 'true'::jsonb, 'and says "changed": true');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 4, 'PAYMENT_FAILED keeps the stock held');
SELECT is_empty($$ SELECT 1 FROM "StockLedger" WHERE "orderId" = (SELECT o2 FROM fx) AND delta > 0 $$,
                'no stock returned to the ledger');
SELECT is((SELECT api.record_payment(o2, false) -> 'changed' FROM fx), 'false'::jsonb,
          'a repeated failure is a no-op ("changed": false)');
SELECT is((SELECT api.record_payment(o2, true, 'ref-2b') ->> 'status' FROM fx), 'PAID',
          'a success after a failure (within the hold window) makes it PAID');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 4, 'payments never move stock');

-- After a cancel (4)
SELECT api.cancel_order(o3) FROM fx;
SELECT throws_ok($$ SELECT api.record_payment((SELECT o3 FROM fx), true, 'late') $$, 'MKS09', NULL,
                 'a success for a cancelled order is MKS09 (refund by hand)');
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT o3 FROM fx)), 'CANCELLED', 'the order stays CANCELLED');
SELECT is((SELECT api.record_payment(o3, false) -> 'changed' FROM fx), 'false'::jsonb,
          'a failure for a cancelled order changes nothing');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 5, 'the cancelled unit was returned exactly once');

-- Bad arguments (2)
SELECT throws_ok($$ SELECT api.record_payment('no-such-order', true) $$, 'MK404', NULL, 'an unknown order is MK404');
SELECT throws_ok($$ SELECT api.record_payment((SELECT o1 FROM fx), NULL) $$, 'MKV00', NULL, 'succeeded NULL is MKV00');

-- Invariants (2)
SELECT is(pg_temp.ledger_sum((SELECT p FROM fx)), pg_temp.stock_of((SELECT p FROM fx)), 'stock equals the ledger');
SELECT set_eq($$ SELECT id, status FROM "Order" $$,
              $$ SELECT o1 AS id, 'PAID' AS status FROM fx UNION ALL SELECT o2, 'PAID' FROM fx
                 UNION ALL SELECT o3, 'CANCELLED' FROM fx $$, 'every order ended where expected');

SELECT * FROM finish();
ROLLBACK;
