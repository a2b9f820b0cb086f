-- maxPerBuyer: a buyer may hold at most that many units of a product in unpaid orders plus the
-- order being made. api.add_to_cart and api.set_cart_quantity refuse early, api.checkout enforces
-- it (for a cart filled behind add_to_cart's back too), with MKQ09; a refused checkout creates
-- nothing and keeps the cart.
BEGIN;
\ir lib/helpers.psql
SELECT plan(32);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
                               pg_temp.mk_user('BUYER') AS other;
ALTER TABLE fx ADD p text, ADD q text, ADD o text;
UPDATE fx SET p = api.create_product(seller, 'Limited drop', 50, 100, 'Two per collector', 2) ->> 'id',
              q = pg_temp.mk_product(seller, 100);
CREATE FUNCTION pg_temp.cart(p_user text) RETURNS TABLE (pid text, qty integer) LANGUAGE sql AS
    $$ SELECT "productId", quantity FROM "CartItem" WHERE "userId" = p_user $$;
CREATE FUNCTION pg_temp.orders_of(p_user text) RETURNS bigint LANGUAGE sql AS
    $$ SELECT count(*) FROM "Order" WHERE "userId" = p_user $$;

-- add_to_cart (7)
SELECT lives_ok($$ SELECT api.add_to_cart(buyer, p, 2) FROM fx $$, 'a line of 2 units of a product capped at 2 is fine');
SELECT throws_ok($$ SELECT api.add_to_cart(buyer, p, 1) FROM fx $$, 'MKQ09', NULL,
                 'raising the line to 3 is MKQ09');
SELECT is(pg_temp.error_of($$ SELECT api.add_to_cart(buyer, p, 1) FROM fx $$) -> 'detail',
          (SELECT jsonb_build_object('productId', p, 'maxPerBuyer', 2, 'requested', 3, 'held', 0) FROM fx),
          'its DETAIL: productId, maxPerBuyer, the line''s new quantity as requested, held');
SELECT isnt(pg_temp.error_of($$ SELECT api.add_to_cart(buyer, p, 1) FROM fx $$) ->> 'hint', NULL, 'it has a HINT');
SELECT set_eq($$ SELECT * FROM pg_temp.cart((SELECT buyer FROM fx)) $$, $$ SELECT p, 2 FROM fx $$,
              'the refused add left the line at 2');
SELECT throws_ok($$ SELECT api.set_cart_quantity(buyer, p, 3) FROM fx $$, 'MKQ09', NULL,
                 'set_cart_quantity to 3 is MKQ09 too');
SELECT lives_ok($$ SELECT api.add_to_cart(buyer, q, 50) FROM fx $$, 'a product without a cap is not limited');

-- checkout within the cap; then the units are held (6)
UPDATE fx SET o = api.checkout(buyer, '{"city": "Oaxaca"}') ->> 'id';
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT o FROM fx)), 'PENDING_PAYMENT', 'a checkout within the cap goes through');
SELECT throws_ok($$ SELECT api.add_to_cart(buyer, p, 1) FROM fx $$, 'MKQ09', NULL,
                 'with 2 units held unpaid, adding 1 more is MKQ09');
SELECT is(pg_temp.error_of($$ SELECT api.add_to_cart(buyer, p, 1) FROM fx $$) -> 'detail',
          (SELECT jsonb_build_object('productId', p, 'maxPerBuyer', 2, 'requested', 1, 'held', 2) FROM fx),
          'its DETAIL counts the 2 held units');
SELECT lives_ok($$ SELECT api.add_to_cart(other, p, 2) FROM fx $$, 'another buyer is not affected');
SELECT lives_ok($$ SELECT api.add_to_cart(buyer, q, 1) FROM fx $$, 'the buyer may still add an uncapped product');
SELECT is_empty($$ SELECT * FROM pg_temp.cart((SELECT buyer FROM fx)) WHERE pid = (SELECT p FROM fx) $$,
                'no line of the capped product was added');

-- checkout enforces it for a cart filled behind add_to_cart's back (9)
INSERT INTO "CartItem" ("userId", "productId", quantity) SELECT buyer, p, 1 FROM fx;
CREATE TEMP TABLE before AS
SELECT pg_temp.stock_of(p) AS p_stock, pg_temp.stock_of(q) AS q_stock, pg_temp.orders_of(buyer) AS orders FROM fx;
SELECT throws_ok($$ SELECT api.checkout(buyer, '{"city": "Oaxaca"}') FROM fx $$, 'MKQ09', NULL,
                 'checkout of 1 more unit while 2 are held is MKQ09');
SELECT is(pg_temp.error_of($$ SELECT api.checkout(buyer, '{"city": "Oaxaca"}') FROM fx $$) -> 'detail',
          (SELECT jsonb_build_object('productId', p, 'maxPerBuyer', 2, 'requested', 1, 'held', 2) FROM fx),
          'its DETAIL names the product, the cap, the cart''s quantity and the held units');
SELECT set_eq($$ SELECT * FROM pg_temp.cart((SELECT buyer FROM fx)) $$, $$ SELECT p, 1 FROM fx UNION ALL SELECT q, 1 FROM fx $$,
              'the cart is kept, every line of it');
SELECT is(pg_temp.orders_of((SELECT buyer FROM fx)), (SELECT orders FROM before), 'no order was created');
SELECT is(ARRAY[pg_temp.stock_of((SELECT p FROM fx)), pg_temp.stock_of((SELECT q FROM fx))],
          (SELECT ARRAY[p_stock, q_stock] FROM before), 'no stock was taken');
SELECT api.record_payment(o, false) FROM fx;
SELECT throws_ok($$ SELECT api.checkout(buyer, '{"city": "Oaxaca"}') FROM fx $$, 'MKQ09', NULL,
                 'a PAYMENT_FAILED order still holds its units');
SELECT api.record_payment(o, true) FROM fx;
SELECT lives_ok($$ SELECT api.checkout(buyer, '{"city": "Oaxaca"}') FROM fx $$,
                'once that order is paid, its units no longer count: the checkout goes through');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), (SELECT p_stock - 1 FROM before), 'and takes its unit');
SELECT is_empty($$ SELECT * FROM pg_temp.cart((SELECT buyer FROM fx)) $$, 'and empties the cart');

-- One order over the cap, with nothing held; a cancelled order gives the allowance back (6)
INSERT INTO "CartItem" ("userId", "productId", quantity) SELECT other, p, 1 FROM fx
ON CONFLICT ("userId", "productId") DO UPDATE SET quantity = "CartItem".quantity + 1;
SELECT is(pg_temp.error_of($$ SELECT api.checkout(other, '{"city": "Lima"}') FROM fx $$) -> 'detail',
          (SELECT jsonb_build_object('productId', p, 'maxPerBuyer', 2, 'requested', 3, 'held', 0) FROM fx),
          'a single order of 3 units of a product capped at 2 is MKQ09 with nothing held');
UPDATE "CartItem" SET quantity = 2 WHERE "userId" = (SELECT other FROM fx);
SELECT lives_ok($$ SELECT api.checkout(other, '{"city": "Lima"}') FROM fx $$, 'with 2 it goes through');
SELECT throws_ok($$ SELECT api.add_to_cart(other, p, 1) FROM fx $$, 'MKQ09', NULL, 'then the allowance is used up');
SELECT api.cancel_order(id) FROM "Order" WHERE "userId" = (SELECT other FROM fx);
SELECT lives_ok($$ SELECT api.add_to_cart(other, p, 2) FROM fx $$, 'a cancelled order no longer holds its units');
SELECT lives_ok($$ SELECT api.checkout(other, '{"city": "Lima"}') FROM fx $$, 'and the buyer may buy 2 again');
SELECT is(pg_temp.orders_of((SELECT other FROM fx)), 2::bigint, 'the buyer has one cancelled and one new order');

-- The seller changes the cap (4)
SELECT api.update_product(p, (SELECT "version" FROM "Product" WHERE id = p), '{"maxPerBuyer": 5}', seller) FROM fx;
SELECT lives_ok($$ SELECT api.add_to_cart(other, p, 3) FROM fx $$, 'a cap raised to 5 allows 3 more next to 2 held');
SELECT throws_ok($$ SELECT api.add_to_cart(other, p, 1) FROM fx $$, 'MKQ09', NULL, 'but not a sixth');
SELECT api.update_product(p, (SELECT "version" FROM "Product" WHERE id = p), '{"maxPerBuyer": null}', seller) FROM fx;
SELECT lives_ok($$ SELECT api.add_to_cart(other, p, 50) FROM fx $$, 'a cleared cap limits nothing');
SELECT ok((SELECT bool_and(pg_temp.ledger_sum(x) = pg_temp.stock_of(x)) FROM fx, unnest(ARRAY[p, q]) x),
          'stock equals the ledger');

SELECT * FROM finish();
ROLLBACK;
