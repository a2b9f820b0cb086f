-- api.cancel_order: cancels a not-yet-shipped order and returns its stock exactly once.
BEGIN;
\ir lib/helpers.psql
SELECT plan(17);

CREATE TEMP TABLE fx AS
SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
       pg_temp.mk_user('BUYER') AS stranger, pg_temp.mk_user('ADMIN') AS admin;
ALTER TABLE fx ADD p text, ADD o1 text, ADD o2 text, ADD o3 text, ADD o4 text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10);
UPDATE fx SET o1 = pg_temp.mk_order(buyer, p, 3);
UPDATE fx SET o2 = pg_temp.mk_order(buyer, p, 2);
UPDATE fx SET o3 = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET o4 = pg_temp.mk_order(buyer, p, 1);
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 3, 'setup: four orders hold 7 of 10 units');

-- Another user's order is not found (2)
SELECT throws_ok($$ SELECT api.cancel_order((SELECT o1 FROM fx), (SELECT stranger FROM fx)) $$, 'MK404', NULL,
                 'another user''s order is MK404');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 3, 'and its stock stays held');

-- The owner cancels: stock comes back once (6)
CREATE TEMP TABLE c1 AS SELECT api.cancel_order(o1, buyer) AS j FROM fx;
SELECT is((SELECT j ->> 'status' FROM c1), 'CANCELLED', 'the owner''s cancel returns the CANCELLED order');
SELECT is((SELECT j ->> 'cancelReason' FROM c1), 'CANCELLED_BY_BUYER', 'with the default reason');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 6, 'its 3 units are back');
SELECT results_eq($$ SELECT delta, reason, "orderId" FROM "StockLedger" WHERE reason = 'CANCEL' $$,
                  $$ SELECT 3, 'CANCEL', o1 FROM fx $$, 'one CANCEL ledger row with the order id');
SELECT throws_ok($$ SELECT api.cancel_order((SELECT o1 FROM fx), (SELECT buyer FROM fx)) $$, 'MKS09', NULL,
                 'a second cancel is MKS09');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 6, 'and returns nothing a second time');

-- Admins, DBAs, paid orders, and orders that have shipped (8)
SELECT is((SELECT api.cancel_order(o2, admin, 'OUT_OF_ORDER') ->> 'cancelReason' FROM fx), 'OUT_OF_ORDER',
          'an admin may cancel any order, with a reason');
SELECT api.record_payment(o3, true, 'pay-3') FROM fx;
SELECT is((SELECT api.cancel_order(o3) ->> 'status' FROM fx), 'CANCELLED', 'a PAID order can still be cancelled (by a DBA)');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 9, 'both cancellations returned their units');
UPDATE "Order" SET status = 'SHIPPED' WHERE id = (SELECT o4 FROM fx);
SELECT throws_ok($$ SELECT api.cancel_order((SELECT o4 FROM fx)) $$, 'MKS09', NULL, 'a SHIPPED order is MKS09');
UPDATE "Order" SET status = 'DELIVERED' WHERE id = (SELECT o4 FROM fx);
SELECT throws_ok($$ SELECT api.cancel_order((SELECT o4 FROM fx)) $$, 'MKS09', NULL, 'a DELIVERED order is MKS09');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 9, 'a shipped order keeps its stock taken');
SELECT throws_ok($$ SELECT api.cancel_order('no-such-order') $$, 'MK404', NULL, 'an unknown order is MK404');
SELECT is(pg_temp.ledger_sum((SELECT p FROM fx)), pg_temp.stock_of((SELECT p FROM fx)), 'stock equals the ledger');

SELECT * FROM finish();
ROLLBACK;
