-- api.create_product, api.get_product, api.list_products.
BEGIN;
\ir lib/helpers.psql
SELECT plan(24);

CREATE TEMP TABLE fx AS
SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('ADMIN') AS admin, pg_temp.mk_user('BUYER') AS buyer;
CREATE TEMP TABLE made AS
SELECT api.create_product(seller, '  Clay mug  ', 19.90, 7, 'Glazed by hand') AS j FROM fx;

-- create_product: success (7)
SELECT is((SELECT j ->> 'name' FROM made), 'Clay mug', 'create_product trims the name');
SELECT is((SELECT (j ->> 'price')::numeric FROM made), 19.90, 'create_product stores the price');
SELECT is((SELECT (j ->> 'stock')::int FROM made), 7, 'create_product stores the stock');
SELECT is((SELECT (j ->> 'version')::int FROM made), 1, 'a new product starts at version 1');
SELECT is((SELECT j ->> 'sellerId' FROM made), (SELECT seller FROM fx), 'the product belongs to its seller');
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of((SELECT j ->> 'id' FROM made)) $$,
                  $$ VALUES (7, 'OPENING_BALANCE', NULL::text, 1) $$,
                  'its initial stock is the ledger''s OPENING_BALANCE');
SELECT lives_ok($$ SELECT api.create_product((SELECT admin FROM fx), 'Admin item', 0, 0) $$,
                'an ADMIN may list a product, free and out of stock');

-- create_product: errors (7)
SELECT throws_ok($$ SELECT api.create_product((SELECT buyer FROM fx), 'Mug', 1, 1) $$, 'MK403', NULL,
                 'a BUYER may not list products (MK403)');
SELECT throws_ok($$ SELECT api.create_product('no-such-user', 'Mug', 1, 1) $$, 'MK404', NULL,
                 'an unknown seller is MK404');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), '   ', 1, 1) $$, 'MKV00', NULL,
                 'a blank name is MKV00');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', -1, 1) $$, 'MKV00', NULL,
                 'a negative price is MKV00');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', 1.005, 1) $$, 'MKV00', NULL,
                 'a price with three decimals is MKV00');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', 1, -1) $$, 'MKV00', NULL,
                 'a negative stock is MKV00');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), NULL, 1, 1) $$, 'MKV00', NULL,
                 'a NULL name is MKV00');

-- get_product (3)
SELECT is(api.get_product((SELECT j ->> 'id' FROM made)), (SELECT j FROM made),
          'get_product returns what create_product returned');
SELECT throws_ok($$ SELECT api.get_product('no-such-product') $$, 'MK404', NULL, 'get_product of an unknown id is MK404');
UPDATE "Product" SET price = 21 WHERE id = (SELECT j ->> 'id' FROM made);
SELECT is((api.get_product((SELECT j ->> 'id' FROM made)) ->> 'version')::int, 2,
          'get_product shows the current version (the HTTP ETag)');

-- list_products: keyset pages in id order after a cursor (7)
INSERT INTO "Product" (id, name, price, stock, "sellerId")
SELECT 'zzz-list-' || i, 'Listed ' || i, i, i, seller FROM fx, generate_series(1, 3) AS i;
SELECT is(jsonb_path_query_array(api.list_products(2, 'zzz-list-0'), '$.items[*].id'),
          '["zzz-list-1", "zzz-list-2"]'::jsonb, 'list_products returns a page in id order after the cursor');
SELECT is(api.list_products(2, 'zzz-list-0') ->> 'next', 'zzz-list-2', 'a full page carries the next cursor');
SELECT is(jsonb_path_query_array(api.list_products(2, 'zzz-list-2'), '$.items[*].id'),
          '["zzz-list-3"]'::jsonb, 'the next page continues after the cursor');
SELECT is(api.list_products(2, 'zzz-list-2') ->> 'next', NULL, 'a short page has no next cursor');
SELECT is(jsonb_array_length(api.list_products(200) -> 'items'), (SELECT count(*)::int FROM "Product"),
          'without a cursor the first page starts at the beginning');
SELECT throws_ok($$ SELECT api.list_products(0) $$, 'MKV00', NULL, 'limit 0 is MKV00');
SELECT throws_ok($$ SELECT api.list_products(201) $$, 'MKV00', NULL, 'limit 201 is MKV00');

SELECT * FROM finish();
ROLLBACK;
