-- The triggers that stand in for what "Product"'s foreign keys and a fixed primary key guaranteed:
-- internal.product_guard_delete (an ordered product is never deleted, MKS09; an unordered one takes
-- its cart lines with it) and internal.product_bump_version (the id never changes, MKS09; every
-- other UPDATE, whatever it sets, raises version by exactly 1 and stamps "updatedAt").
BEGIN;
\ir lib/helpers.psql
SELECT plan(36);

CREATE TEMP TABLE fx AS
SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
       pg_temp.mk_user('BUYER') AS buyer2;
ALTER TABLE fx ADD sold text, ADD hist text, ADD o text;
-- sold: listed with stock and ordered once. hist: listed with stock, never ordered (it has ledger rows).
UPDATE fx SET sold = pg_temp.mk_product(seller, 5), hist = pg_temp.mk_product(seller, 3);
UPDATE fx SET o = pg_temp.mk_order(buyer, sold, 1);
-- Products listed with stock 0 and never changed have no ledger rows (deltas are never 0).
INSERT INTO "Product" (id, name, price, stock, "sellerId")
SELECT v.id, v.id, 4, 0, seller FROM fx, (VALUES ('g-cart'), ('g-keep'), ('g-ids')) AS v(id);
SELECT api.add_to_cart(buyer2, sold, 1), api.add_to_cart(buyer2, hist, 1),
       api.add_to_cart(buyer, 'g-cart', 1), api.add_to_cart(buyer2, 'g-cart', 2),
       api.add_to_cart(buyer, 'g-keep', 1)
FROM fx;
SELECT is((SELECT count(*)::int FROM "CartItem"), 5, 'setup: five cart lines');

-- ---------------------------------------------------------------- the delete guard

-- An ordered product cannot be deleted (6)
SELECT throws_ok($$ DELETE FROM "Product" WHERE id = (SELECT sold FROM fx) $$, 'MKS09', NULL,
                 'deleting an ordered product raises MKS09');
SELECT is(pg_temp.error_of($$ DELETE FROM "Product" WHERE id = (SELECT sold FROM fx) $$) -> 'detail' ->> 'productId',
          (SELECT sold FROM fx), 'its DETAIL names the product');
SELECT ok(EXISTS (SELECT 1 FROM "Product" p JOIN fx ON p.id = fx.sold), 'the ordered product is still there');
SELECT is((SELECT count(*)::int FROM "CartItem" c JOIN fx ON c."productId" = fx.sold), 1,
          'and another buyer''s cart line for it stays');
SELECT lives_ok($$ SELECT api.cancel_order((SELECT o FROM fx), (SELECT buyer FROM fx)) $$,
                'setup: its only order is cancelled');
SELECT throws_ok($$ DELETE FROM "Product" WHERE id = (SELECT sold FROM fx) $$, 'MKS09', NULL,
                 'a product whose only order was cancelled still cannot be deleted (the order refers to it)');

-- One statement that would delete an ordered and an unordered product deletes neither (3)
SELECT throws_ok($$ DELETE FROM "Product" WHERE id IN ((SELECT sold FROM fx), 'g-cart') $$, 'MKS09', NULL,
                 'a multi-row DELETE that includes an ordered product raises MKS09');
SELECT ok(EXISTS (SELECT 1 FROM "Product" WHERE id = 'g-cart'), 'the unordered product of that statement is kept');
SELECT is((SELECT count(*)::int FROM "CartItem" WHERE "productId" = 'g-cart'), 2,
          'and its cart lines too (the whole statement was undone)');

-- An unordered product is deleted together with its cart lines, and only with its own (5)
SELECT lives_ok($$ DELETE FROM "Product" WHERE id = 'g-cart' $$, 'an unordered product can be deleted');
SELECT ok(NOT EXISTS (SELECT 1 FROM "Product" WHERE id = 'g-cart'), 'it is gone');
SELECT is((SELECT count(*)::int FROM "CartItem" WHERE "productId" = 'g-cart'), 0,
          'every buyer''s cart line for it went with it');
SELECT is((SELECT count(*)::int FROM "CartItem" c JOIN fx ON c."userId" = fx.buyer AND c."productId" = 'g-keep'), 1,
          'a cart line for another product stays');
SELECT is((SELECT count(*)::int FROM "CartItem"), 3, 'three cart lines are left');

-- A never-ordered product with a stock history is kept by the ledger's foreign key (2)
SELECT throws_ok($$ DELETE FROM "Product" WHERE id = (SELECT hist FROM fx) $$, '23503', NULL,
                 'a product with ledger rows cannot be deleted (the ledger refers to it)');
SELECT is((SELECT count(*)::int FROM "CartItem" c JOIN fx ON c."productId" = fx.hist), 1,
          'and the cart line the trigger removed came back with the failed statement');

-- ---------------------------------------------------------------- the id never changes

-- A change of id raises MKS09 and changes nothing (6)
SELECT throws_ok($$ UPDATE "Product" SET id = 'g-renamed' WHERE id = 'g-ids' $$, 'MKS09', NULL,
                 'changing a product''s id raises MKS09');
SELECT is(pg_temp.error_of($$ UPDATE "Product" SET id = 'g-renamed' WHERE id = 'g-ids' $$) -> 'detail' ->> 'productId',
          'g-ids', 'its DETAIL names the product by its old id');
SELECT results_eq($$ SELECT id, "version" FROM "Product" WHERE id IN ('g-ids', 'g-renamed') $$,
                  $$ VALUES ('g-ids', 1) $$, 'the product keeps its id and its version');
SELECT throws_ok($$ UPDATE "Product" SET id = id || '-x', name = 'Renamed' WHERE id = (SELECT sold FROM fx) $$,
                 'MKS09', NULL, 'changing the id of an ordered product together with its name raises MKS09');
SELECT is((SELECT name FROM "Product" p JOIN fx ON p.id = fx.sold), 'Handmade item',
          'and its name did not change either');
SELECT lives_ok($$ UPDATE "Product" SET id = id WHERE id = 'g-ids' $$,
                'setting the id to its own value is not a change');

-- Every other UPDATE: version + 1 and "updatedAt" = now(), whatever it sets (13)
-- One product per kind of change, each created with an old "updatedAt" so the stamp is seen to move.
INSERT INTO "Product" (id, name, price, stock, "sellerId", "createdAt", "updatedAt")
SELECT 'v-' || k, 'Cup', 10, 4, seller, '2000-01-01', '2000-01-01'
FROM fx, unnest(ARRAY['name', 'description', 'price', 'stock', 'seller', 'created', 'max', 'version',
                      'updated', 'many', 'upsert']) AS k;
CREATE FUNCTION pg_temp.bumped_once(p_id text) RETURNS TABLE (version integer, stamped boolean)
LANGUAGE sql AS $$ SELECT "version", "updatedAt" = now() FROM "Product" WHERE id = p_id $$;

UPDATE "Product" SET name = 'Cup II' WHERE id = 'v-name';
UPDATE "Product" SET description = 'glazed' WHERE id = 'v-description';
UPDATE "Product" SET price = 11 WHERE id = 'v-price';
UPDATE "Product" SET stock = 6 WHERE id = 'v-stock';
UPDATE "Product" SET "sellerId" = (SELECT pg_temp.mk_user('SELLER')) WHERE id = 'v-seller';
UPDATE "Product" SET "createdAt" = '2001-01-01' WHERE id = 'v-created';
UPDATE "Product" SET "maxPerBuyer" = 2 WHERE id = 'v-max';
UPDATE "Product" SET "version" = 40 WHERE id = 'v-version';
UPDATE "Product" SET "updatedAt" = '1999-01-01' WHERE id = 'v-updated';
UPDATE "Product" SET name = 'Mug', price = 9, stock = 2, "version" = 1, "updatedAt" = '1999-01-01'
WHERE id = 'v-many';
INSERT INTO "Product" (id, name, price, stock, "sellerId")
SELECT 'v-upsert', 'Cup', 10, 4, seller FROM fx
ON CONFLICT (id) DO UPDATE SET name = 'Upserted';

SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-name') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of the name: version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-description') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of the description: version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-price') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of the price: version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-stock') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of the stock: version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-seller') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of "sellerId": version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-created') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of "createdAt": version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-max') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of "maxPerBuyer": version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-version') $$, $$ VALUES (2, true) $$,
                  'an UPDATE that sets version = 40 yields version 2');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-updated') $$, $$ VALUES (2, true) $$,
                  'an UPDATE that sets an old "updatedAt" gets now() and version 2');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-many') $$, $$ VALUES (2, true) $$,
                  'an UPDATE of several columns at once, version and "updatedAt" among them: version 2, now()');
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-upsert') $$, $$ VALUES (2, true) $$,
                  'INSERT ... ON CONFLICT DO UPDATE: version 2 and "updatedAt" = now()');
SELECT results_eq($$ SELECT "version", "updatedAt" = now() FROM "Product" WHERE id = 'g-ids' $$,
                  $$ VALUES (2, true) $$, 'the UPDATE that set the id to itself raised version to 2 too');
UPDATE "Product" SET name = name WHERE id = 'v-name';
SELECT results_eq($$ SELECT * FROM pg_temp.bumped_once('v-name') $$, $$ VALUES (3, true) $$,
                  'a second UPDATE of the same row, even a no-op one, raises version to 3');

SELECT * FROM finish();
ROLLBACK;
