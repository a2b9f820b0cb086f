-- api.get_order and api.list_orders: reads, scoped to the user when one is given.
BEGIN;
\ir lib/helpers.psql
SELECT plan(12);

CREATE TEMP TABLE fx AS
SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer, pg_temp.mk_user('BUYER') AS stranger;
ALTER TABLE fx ADD p text, ADD o1 text, ADD o2 text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10, 4.25);
UPDATE fx SET o1 = pg_temp.mk_order(buyer, p, 2);
UPDATE fx SET o2 = pg_temp.mk_order(buyer, p, 1);
UPDATE "Order" SET "createdAt" = now() - interval '1 day' WHERE id = (SELECT o1 FROM fx);

-- get_order (6)
CREATE TEMP TABLE g AS SELECT api.get_order(o1) AS j FROM fx;
SELECT is((SELECT j ->> 'id' FROM g), (SELECT o1 FROM fx), 'get_order returns the order');
SELECT is((SELECT j -> 'items' FROM g),
          (SELECT jsonb_build_array(jsonb_build_object('productId', p, 'quantity', 2, 'unitPrice', 4.25)) FROM fx),
          'with its items and the prices paid');
SELECT is((SELECT (j ->> 'total')::numeric FROM g), 8.50, 'and its total');
SELECT is((SELECT api.get_order(o1, buyer) ->> 'id' FROM fx), (SELECT o1 FROM fx), 'the owner finds it');
SELECT throws_ok($$ SELECT api.get_order((SELECT o1 FROM fx), (SELECT stranger FROM fx)) $$, 'MK404', NULL,
                 'another user''s order is MK404');
SELECT throws_ok($$ SELECT api.get_order('no-such-order') $$, 'MK404', NULL, 'an unknown order is MK404');

-- list_orders (6)
SELECT is(jsonb_path_query_array(api.list_orders((SELECT buyer FROM fx)), '$.items[*].id'),
          (SELECT jsonb_build_array(o2, o1) FROM fx), 'list_orders lists the user''s orders newest first');
SELECT is(jsonb_path_query_array(api.list_orders((SELECT buyer FROM fx), 1), '$.items[*].id'),
          (SELECT jsonb_build_array(o2) FROM fx), 'a limit of 1 gives the newest only');
SELECT is((api.list_orders((SELECT buyer FROM fx)) -> 'items' -> 0 -> 'items' -> 0 ->> 'quantity')::int, 1,
          'each listed order carries its items');
SELECT is(api.list_orders((SELECT stranger FROM fx)), '{"items": []}'::jsonb, 'a user without orders gets an empty list');
SELECT throws_ok($$ SELECT api.list_orders((SELECT buyer FROM fx), 0) $$, 'MKV00', NULL, 'limit 0 is MKV00');
SELECT throws_ok($$ SELECT api.list_orders((SELECT buyer FROM fx), 201) $$, 'MKV00', NULL, 'limit 201 is MKV00');

SELECT * FROM finish();
ROLLBACK;
