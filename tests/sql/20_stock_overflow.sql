-- The stock-overflow attack through the api, with the seller as actor: a product with stock 1, a
-- second account buys the unit and never pays, the seller raises the stock towards 2^31 - 1 so
-- that returning the unit would overflow. api.update_product refuses any stock that, with the
-- units its returnable orders hold, exceeds 1,000,000,000; the expiry job then still works.
-- Also: maxPerBuyer through api.create_product and api.update_product.
BEGIN;
\ir lib/helpers.psql
SELECT plan(35);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
                               pg_temp.mk_user('BUYER') AS payer;
ALTER TABLE fx ADD p text, ADD o text, ADD q text, ADD paid text, ADD shipped text;
UPDATE fx SET p = pg_temp.mk_product(seller, 1);
UPDATE fx SET o = pg_temp.mk_order(buyer, p, 1);
CREATE FUNCTION pg_temp.v(p_product text) RETURNS integer LANGUAGE sql AS
    $$ SELECT "version" FROM "Product" WHERE id = p_product $$;
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 0, 'setup: the only unit is held by an unpaid order');

-- The attack's steps are refused (8)
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": 1000000000}', seller) FROM fx $$,
                 'MKV00', NULL, 'a stockDelta of 1e9 on a product with 1 unit held is MKV00');
SELECT is(pg_temp.error_of($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": 1000000000}', seller) FROM fx $$)
          -> 'detail', '{"field": "stock", "requested": 1000000000, "held": 1, "maxStock": 999999999}'::jsonb,
          'its DETAIL names the field stock, the stock asked for, the units held and the highest stock allowed');
SELECT isnt(pg_temp.error_of($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": 1000000000}', seller) FROM fx $$)
            ->> 'hint', NULL, 'and it has a HINT');
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"stock": 1000000000}', seller) FROM fx $$,
                 'MKV00', NULL, 'an absolute stock of 1e9 is refused too (1e9 + 1 held)');
SELECT lives_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": 999999999}', seller) FROM fx $$,
                'a raise to exactly 1e9 with what is held (999999999 + 1) is accepted');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 999999999, 'the stock is 999999999');
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": 1000000000}', seller) FROM fx $$,
                 'MKV00', NULL, 'the second 1e9 step is MKV00');
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": 147483647}', seller) FROM fx $$,
                 'MKV00', NULL, 'and so is the last step, 147483647');

-- What stays allowed (4)
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": 1}', seller) FROM fx $$,
                 'MKV00', NULL, 'one more unit than the cap is MKV00');
SELECT lives_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"price": 12, "name": "Renamed"}', seller) FROM fx $$,
                'an edit without a stock change is not checked against the cap');
SELECT lives_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"stockDelta": -5}', seller) FROM fx $$,
                'lowering the stock is accepted');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 999999994, 'the stock is 999999994');

-- Expiry still works: the unit comes back without overflow (4)
UPDATE "Order" SET "createdAt" = now() - interval '1 hour' WHERE id = (SELECT o FROM fx);
SELECT is(api.expire_pending_orders(), 1, 'the unpaid order expires');
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT o FROM fx)), 'CANCELLED', 'it is CANCELLED');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 999999995, 'its unit is back');
SELECT is(pg_temp.ledger_sum((SELECT p FROM fx)), pg_temp.stock_of((SELECT p FROM fx)), 'stock equals the ledger');

-- Which orders count as held: PENDING_PAYMENT, PAYMENT_FAILED and PAID (a cancel gives their units
-- back), not SHIPPED nor CANCELLED (5)
UPDATE fx SET q = pg_temp.mk_product(seller, 10);
UPDATE fx SET paid = pg_temp.mk_order(payer, q, 3);
UPDATE fx SET shipped = pg_temp.mk_order(payer, q, 4);
SELECT api.record_payment(paid, true), api.record_payment(shipped, true) FROM fx;
UPDATE "Order" SET status = 'SHIPPED' WHERE id = (SELECT shipped FROM fx);
SELECT pg_temp.mk_order(buyer, q, 1) FROM fx;
SELECT api.record_payment(max(id), false) FROM "Order" WHERE "userId" = (SELECT buyer FROM fx)
    AND status = 'PENDING_PAYMENT';
SELECT pg_temp.mk_order(buyer, q, 2) FROM fx;
SELECT is(pg_temp.error_of($$ SELECT api.update_product(q, pg_temp.v(q), '{"stock": 1000000000}', seller) FROM fx $$)
          -> 'detail' -> 'held', '6'::jsonb, 'held counts PAID (3), PAYMENT_FAILED (1) and PENDING_PAYMENT (2), not SHIPPED (4)');
SELECT lives_ok($$ SELECT api.update_product(q, pg_temp.v(q), '{"stock": 999999994}', seller) FROM fx $$,
                'a stock of 1e9 - 6 is accepted');
SELECT api.cancel_order(paid) FROM fx;
SELECT is(pg_temp.stock_of((SELECT q FROM fx)), 999999997, 'cancelling the PAID order gives back its 3 units');
SELECT is(pg_temp.error_of($$ SELECT api.update_product(q, pg_temp.v(q), '{"stockDelta": 1}', seller) FROM fx $$)
          -> 'detail' -> 'held', '3'::jsonb, 'a CANCELLED order no longer counts: stock + held stays at 1e9');
SELECT throws_ok($$ SELECT api.update_product(q, pg_temp.v(q), '{"stockDelta": 1}', seller) FROM fx $$,
                 'MKV00', NULL, 'so one more unit is still refused');

-- maxPerBuyer in create_product (5)
SELECT is((api.create_product((SELECT seller FROM fx), 'Limited drop', 30, 50, 'One per collector', 3)
           -> 'maxPerBuyer'), '3'::jsonb, 'create_product stores maxPerBuyer and the JSON shows it');
SELECT is((api.create_product((SELECT seller FROM fx), 'Open item', 30, 50) -> 'maxPerBuyer'), 'null'::jsonb,
          'without it, maxPerBuyer is null (no cap)');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', 1, 1, '', 0) $$, 'MKV00', NULL,
                 'maxPerBuyer 0 is MKV00');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', 1, 1, '', 10001) $$, 'MKV00', NULL,
                 'maxPerBuyer 10001 is MKV00');
SELECT is(pg_temp.error_of($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', 1, 1, '', -1) $$)
          -> 'detail' ->> 'field', 'maxPerBuyer', 'the DETAIL names the field maxPerBuyer');

-- maxPerBuyer in update_product (8)
SELECT is((SELECT api.update_product(p, pg_temp.v(p), '{"maxPerBuyer": 2}', seller) -> 'maxPerBuyer' FROM fx),
          '2'::jsonb, 'update_product sets maxPerBuyer');
SELECT is((SELECT "maxPerBuyer" FROM "Product" WHERE id = (SELECT p FROM fx)), 2, 'and stores it');
SELECT is((SELECT api.update_product(p, pg_temp.v(p), '{"price": 13}', seller) -> 'maxPerBuyer' FROM fx),
          '2'::jsonb, 'an edit that does not name it keeps it');
SELECT is((SELECT api.update_product(p, pg_temp.v(p), '{"maxPerBuyer": null}', seller) -> 'maxPerBuyer' FROM fx),
          'null'::jsonb, 'JSON null clears it');
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"maxPerBuyer": 0}', seller) FROM fx $$,
                 'MKV00', NULL, 'maxPerBuyer 0 is MKV00');
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"maxPerBuyer": 10001}', seller) FROM fx $$,
                 'MKV00', NULL, 'maxPerBuyer 10001 is MKV00');
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"maxPerBuyer": 1.5}', seller) FROM fx $$,
                 'MKV00', NULL, 'a fractional maxPerBuyer is MKV00');
SELECT throws_ok($$ SELECT api.update_product(p, pg_temp.v(p), '{"maxPerBuyer": "2"}', seller) FROM fx $$,
                 'MKV00', NULL, 'a string maxPerBuyer is MKV00');

SELECT * FROM finish();
ROLLBACK;
