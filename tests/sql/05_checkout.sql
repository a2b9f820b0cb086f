-- api.checkout: the whole cart becomes one PENDING_PAYMENT order, or nothing happens.
BEGIN;
\ir lib/helpers.psql
SELECT plan(45);

CREATE TEMP TABLE fx AS
SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
       pg_temp.mk_user('BUYER') AS buyer2, pg_temp.mk_user('BUYER') AS buyer3;
ALTER TABLE fx ADD a text, ADD b text, ADD c text;
UPDATE fx SET a = pg_temp.mk_product(seller, 5, 10.00), b = pg_temp.mk_product(seller, 2, 7.50),
              c = pg_temp.mk_product(seller, 1, 3.00);

-- Refusals before anything is touched (7)
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Oaxaca"}') $$, 'MKE00', NULL,
                 'an empty cart is MKE00');
SELECT throws_ok($$ SELECT api.checkout('no-such-user', '{"city": "Oaxaca"}') $$, 'MK404', NULL,
                 'an unknown user is MK404');
SELECT api.add_to_cart(buyer, a, 2), api.add_to_cart(buyer, b, 3), api.add_to_cart(buyer, c, 2) FROM fx;
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{}') $$, 'MKV00', NULL,
                 'an empty shipping address is MKV00');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '["Oaxaca"]') $$, 'MKV00', NULL,
                 'a shipping address that is not an object is MKV00');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), NULL) $$, 'MKV00', NULL,
                 'a NULL shipping address is MKV00');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Oaxaca"}', '') $$, 'MKV00', NULL,
                 'an empty idempotency key is MKV00');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Oaxaca"}', repeat('k', 256)) $$, 'MKV00', NULL,
                 'an idempotency key of 256 characters is MKV00');

-- All or nothing: a 3-line cart with two short lines (b: 3 of 2, c: 2 of 1) (7)
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Oaxaca"}') $$, 'MK400', NULL,
                 'a cart with short lines is MK400');
CREATE TEMP TABLE err AS SELECT pg_temp.error_of(format('SELECT api.checkout(%L, %L)', buyer, '{"city": "Oaxaca"}')) AS e FROM fx;
SELECT is((SELECT e ->> 'sqlstate' FROM err), 'MK400', 'error_of sees the same MK400');
SELECT set_eq($$ SELECT p ->> 'productId' AS pid, (p ->> 'requested')::int AS req, (p ->> 'available')::int AS avail
                 FROM err, jsonb_array_elements(e -> 'detail' -> 'products') AS p $$,
              $$ SELECT b AS pid, 3 AS req, 2 AS avail FROM fx UNION ALL SELECT c, 2, 1 FROM fx $$,
              'the DETAIL lists each short product (and only those) with requested and available');
SELECT results_eq($$ SELECT pg_temp.stock_of(a), pg_temp.stock_of(b), pg_temp.stock_of(c) FROM fx $$,
                  $$ VALUES (5, 2, 1) $$, 'no stock changed, not even the line that was available');
SELECT set_eq($$ SELECT "productId", quantity FROM "CartItem" WHERE "userId" = (SELECT buyer FROM fx) $$,
              $$ SELECT a AS pid, 2 AS qty FROM fx UNION ALL SELECT b, 3 FROM fx UNION ALL SELECT c, 2 FROM fx $$,
              'the cart is left exactly as it was');
SELECT is_empty($$ SELECT 1 FROM "Order" WHERE "userId" = (SELECT buyer FROM fx) $$, 'no order was created');
SELECT is_empty($$ SELECT 1 FROM "StockLedger" WHERE reason = 'CHECKOUT' $$, 'no CHECKOUT ledger row was written');

-- Success: fix the cart to a: 2, b: 2 (the last two units of b) (13)
SELECT api.remove_from_cart(buyer, c), api.set_cart_quantity(buyer, b, 2) FROM fx;
CREATE TEMP TABLE o AS
SELECT api.checkout(buyer, '{"city": "Oaxaca", "street": "Alcala 1"}', 'key-1') AS j FROM fx;
SELECT is((SELECT j ->> 'status' FROM o), 'PENDING_PAYMENT', 'the order is PENDING_PAYMENT');
SELECT is((SELECT j -> 'replayed' FROM o), 'false'::jsonb, 'a first checkout is not a replay');
SELECT is((SELECT (j ->> 'total')::numeric FROM o), 35.00, 'the total is 2 x 10.00 + 2 x 7.50');
SELECT results_eq($$ SELECT pg_temp.stock_of(a), pg_temp.stock_of(b), pg_temp.stock_of(c) FROM fx $$,
                  $$ VALUES (3, 0, 1) $$, 'stock is decremented by the ordered quantities; b is sold out');
SELECT set_eq($$ SELECT "productId", quantity, "unitPrice" FROM "OrderItem" WHERE "orderId" = (SELECT j ->> 'id' FROM o) $$,
              $$ SELECT a AS pid, 2 AS qty, 10.00 AS price FROM fx UNION ALL SELECT b, 2, 7.50 FROM fx $$,
              'one order item per line with the price copied from the product');
SELECT is_empty($$ SELECT 1 FROM "CartItem" WHERE "userId" = (SELECT buyer FROM fx) $$, 'the cart is emptied');
SELECT results_eq($$ SELECT status, total, "shippingAddress", "userId", "idempotencyKey" FROM "Order"
                     WHERE id = (SELECT j ->> 'id' FROM o) $$,
                  $$ SELECT 'PENDING_PAYMENT'::text, 35.00::numeric(10,2), '{"city": "Oaxaca", "street": "Alcala 1"}'::jsonb,
                            buyer, 'key-1'::text FROM fx $$,
                  'the "Order" row holds status, total, address, buyer and key');
SELECT set_eq($$ SELECT "productId", delta, reason, "versionAfter" FROM "StockLedger"
                 WHERE "orderId" = (SELECT j ->> 'id' FROM o) $$,
              $$ SELECT a AS pid, -2 AS delta, 'CHECKOUT' AS reason, 2 AS v FROM fx UNION ALL SELECT b, -2, 'CHECKOUT', 2 FROM fx $$,
              'each decrement is a CHECKOUT ledger row with the order and the version after');
SELECT is((SELECT count(*)::int FROM fx, "Product" p WHERE p.id IN (a, b, c) AND p.stock = pg_temp.ledger_sum(p.id)), 3,
          'stock equals the ledger for every product');
UPDATE "Product" SET price = 99 WHERE id = (SELECT a FROM fx);
SELECT is((SELECT "unitPrice" FROM "OrderItem" WHERE "orderId" = (SELECT j ->> 'id' FROM o) AND "productId" = (SELECT a FROM fx)),
          10.00::numeric(10,2), 'a later price change does not touch the price paid');
SELECT is((api.get_order((SELECT j ->> 'id' FROM o)) ->> 'total')::numeric, 35.00, 'nor the order total');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Oaxaca"}') $$, 'MKE00', NULL,
                 'checking out the emptied cart again is MKE00');
SELECT is((SELECT count(*)::int FROM "Order" WHERE "userId" = (SELECT buyer FROM fx)), 1, 'the buyer has exactly one order');

-- The sale queue: the checkout holds each sold product's queue key until commit (1)
SELECT is((SELECT count(*)::int FROM fx, pg_locks l
           WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 2
             AND l.classid = 1296782161 AND l.objid IN (hashtext(a)::oid, hashtext(b)::oid)), 2,
          'the transaction holds the queue key (1296782161, hashtext(id)) of both products sold');

-- Ids: orders get version-7 UUIDs, which sort by creation time; so do new rows of the tables
-- whose ids default to internal.uuid7 (migration 0008) (5)
SELECT matches((SELECT j ->> 'id' FROM o), '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
               'an order id is a version-7 UUID (version nibble 7, RFC variant)');
SELECT cmp_ok(abs(extract(epoch FROM now()) * 1000
                  - ('x' || translate(left(j ->> 'id', 13), '-', ''))::bit(48)::bigint), '<', 60000::numeric,
              'its first 48 bits are the time of the checkout in milliseconds')
FROM o;
SELECT ok((SELECT bool_and(a < b) FROM (SELECT internal.uuid7()::text AS a, pg_sleep(0.002)) x,
                                       LATERAL (SELECT internal.uuid7()::text AS b) y),
          'a uuid7 made 2 ms later sorts after the earlier one');
SELECT is((SELECT count(DISTINCT u)::int FROM (SELECT internal.uuid7() AS u FROM generate_series(1, 1000)) x), 1000,
          '1,000 uuid7 made in a row (mostly within one millisecond) are all different');
SELECT is((SELECT count(*)::int FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name IN ('Order', 'OrderItem', 'CartItem') AND column_name = 'id'
             AND column_default = '(internal.uuid7())::text'), 3,
          '"Order", "OrderItem" and "CartItem" ids default to internal.uuid7()');

-- Idempotent replay: same key, same payload: the same order, nothing created (7)
SELECT api.add_to_cart(buyer, c, 1) FROM fx;  -- a non-empty cart must not be consumed by a replay
CREATE TEMP TABLE r AS
SELECT api.checkout(buyer, '{"street": "Alcala 1", "city": "Oaxaca"}', 'key-1') AS j FROM fx;
SELECT is((SELECT j ->> 'id' FROM r), (SELECT j ->> 'id' FROM o), 'a replay returns the same order id');
SELECT is((SELECT j -> 'replayed' FROM r), 'true'::jsonb, 'with "replayed": true');
SELECT is((SELECT j ->> 'status' FROM r), 'PENDING_PAYMENT', 'and the order''s status');
SELECT is((SELECT count(*)::int FROM "Order" WHERE "userId" = (SELECT buyer FROM fx)), 1, 'a replay creates no order');
SELECT results_eq($$ SELECT pg_temp.stock_of(a), pg_temp.stock_of(b), pg_temp.stock_of(c) FROM fx $$,
                  $$ VALUES (3, 0, 1) $$, 'a replay changes no stock');
SELECT is((SELECT quantity FROM "CartItem" WHERE "userId" = (SELECT buyer FROM fx) AND "productId" = (SELECT c FROM fx)),
          1, 'a replay leaves the current cart alone');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Puebla"}', 'key-1') $$, 'MKI22', NULL,
                 'the same key with another payload is MKI22');

-- Keys are per user; the last unit sells once (5)
SELECT api.add_to_cart(buyer2, c, 1) FROM fx;
SELECT isnt((SELECT api.checkout(buyer2, '{"city": "Oaxaca"}', 'key-1') ->> 'id' FROM fx), (SELECT j ->> 'id' FROM o),
            'another user''s key-1 is a different checkout');
SELECT is(pg_temp.stock_of((SELECT c FROM fx)), 0, 'the last unit of c is sold');
SELECT api.add_to_cart(buyer3, c, 1) FROM fx;
CREATE TEMP TABLE err2 AS SELECT pg_temp.error_of(format('SELECT api.checkout(%L, %L)', buyer3, '{"city": "Leon"}')) AS e FROM fx;
SELECT is((SELECT e ->> 'sqlstate' FROM err2), 'MK400', 'a second buyer of the last unit gets MK400');
SELECT is((SELECT e -> 'detail' -> 'products' FROM err2),
          (SELECT jsonb_build_array(jsonb_build_object('productId', c, 'requested', 1, 'available', 0)) FROM fx),
          'with available 0 in the DETAIL');
-- The first buyer's replay still works after the product sold out.
SELECT is((SELECT api.checkout(buyer, '{"city": "Oaxaca", "street": "Alcala 1"}', 'key-1') ->> 'id' FROM fx),
          (SELECT j ->> 'id' FROM o), 'a replay still answers once the stock is gone');

SELECT * FROM finish();
ROLLBACK;
