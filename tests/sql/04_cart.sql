-- The cart: api.add_to_cart, api.set_cart_quantity, api.remove_from_cart, api.get_cart.
BEGIN;
\ir lib/helpers.psql
SELECT plan(22);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD a text, ADD b text;
UPDATE fx SET a = pg_temp.mk_product(seller, 1, 12.50), b = pg_temp.mk_product(seller, 10, 3);

-- add_to_cart (10)
SELECT is(api.add_to_cart((SELECT buyer FROM fx), (SELECT a FROM fx), 2),
          jsonb_build_object('productId', (SELECT a FROM fx), 'quantity', 2),
          'add_to_cart returns the line');
SELECT is((api.add_to_cart((SELECT buyer FROM fx), (SELECT a FROM fx), 3) ->> 'quantity')::int, 5,
          'adding the same product again raises the quantity');
SELECT is(pg_temp.stock_of((SELECT a FROM fx)), 1, 'a cart may ask for more than the stock: nothing is reserved');
SELECT throws_ok($$ SELECT api.add_to_cart((SELECT buyer FROM fx), (SELECT b FROM fx), 0) $$, 'MKV00', NULL,
                 'quantity 0 is MKV00');
SELECT throws_ok($$ SELECT api.add_to_cart((SELECT buyer FROM fx), (SELECT b FROM fx), 10001) $$, 'MKV00', NULL,
                 'quantity 10001 is MKV00');
SELECT throws_ok($$ SELECT api.add_to_cart((SELECT buyer FROM fx), (SELECT b FROM fx), NULL) $$, 'MKV00', NULL,
                 'a NULL quantity is MKV00');
SELECT throws_ok($$ SELECT api.add_to_cart((SELECT buyer FROM fx), (SELECT a FROM fx), 9996) $$, 'MKV00', NULL,
                 'a line may not grow past 10000 units');
SELECT is((SELECT quantity FROM "CartItem" WHERE "userId" = (SELECT buyer FROM fx) AND "productId" = (SELECT a FROM fx)),
          5, 'and the refused addition left the line at 5');
SELECT throws_ok($$ SELECT api.add_to_cart('no-such-user', (SELECT b FROM fx), 1) $$, 'MK404', NULL,
                 'an unknown user is MK404');
SELECT throws_ok($$ SELECT api.add_to_cart((SELECT buyer FROM fx), 'no-such-product', 1) $$, 'MK404', NULL,
                 'an unknown product is MK404');

-- get_cart (3)
SELECT api.add_to_cart(buyer, b, 4) FROM fx;
SELECT results_eq(
    $$ SELECT e ->> 'productId', (e ->> 'quantity')::int, (e ->> 'available')::int, (e ->> 'unitPrice')::numeric
       FROM jsonb_array_elements(api.get_cart((SELECT buyer FROM fx)) -> 'items') AS e $$,
    $$ SELECT * FROM (SELECT a, 5, 1, 12.50 FROM fx UNION ALL SELECT b, 4, 10, 3.00 FROM fx) t ORDER BY 1 $$,
    'get_cart lists each line in product order with quantity, availability and price');
SELECT is((api.get_cart((SELECT buyer FROM fx)) ->> 'total')::numeric, 5 * 12.50 + 4 * 3,
          'get_cart totals current prices times quantities');
SELECT is(api.get_cart((SELECT seller FROM fx)), '{"items": [], "total": 0}'::jsonb, 'an empty cart is {items: [], total: 0}');

-- set_cart_quantity (4)
SELECT is((api.set_cart_quantity((SELECT buyer FROM fx), (SELECT b FROM fx), 7) ->> 'quantity')::int, 7,
          'set_cart_quantity sets the quantity');
SELECT is((SELECT quantity FROM "CartItem" WHERE "userId" = (SELECT buyer FROM fx) AND "productId" = (SELECT b FROM fx)),
          7, 'and it is stored');
SELECT throws_ok($$ SELECT api.set_cart_quantity((SELECT buyer FROM fx), (SELECT b FROM fx), 0) $$, 'MKV00', NULL,
                 'set_cart_quantity to 0 is MKV00');
SELECT throws_ok($$ SELECT api.set_cart_quantity((SELECT seller FROM fx), (SELECT b FROM fx), 1) $$, 'MK404', NULL,
                 'set_cart_quantity of a line that does not exist is MK404');

-- remove_from_cart (5)
SELECT is(api.remove_from_cart((SELECT buyer FROM fx), (SELECT b FROM fx)) -> 'removed', 'true'::jsonb,
          'remove_from_cart removes the line');
SELECT is(jsonb_array_length(api.get_cart((SELECT buyer FROM fx)) -> 'items'), 1, 'one line is left');
SELECT throws_ok($$ SELECT api.remove_from_cart((SELECT buyer FROM fx), (SELECT b FROM fx)) $$, 'MK404', NULL,
                 'removing it again is MK404');
SELECT is(pg_temp.stock_of((SELECT b FROM fx)), 10, 'cart operations never touch stock');
SELECT is((SELECT count(*)::int FROM "StockLedger" WHERE "productId" IN (SELECT a FROM fx UNION SELECT b FROM fx)), 2,
          'nor the ledger (only the two opening balances)');

SELECT * FROM finish();
ROLLBACK;
