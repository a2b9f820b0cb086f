-- api.update_product: a seller's or admin's edit guarded by the product's version.
BEGIN;
\ir lib/helpers.psql
SELECT plan(26);

CREATE TEMP TABLE fx AS
SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('SELLER') AS other,
       pg_temp.mk_user('ADMIN') AS admin, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p text;
UPDATE fx SET p = pg_temp.mk_product(seller, 5, 20.00);

-- Success by the seller (4)
CREATE TEMP TABLE u1 AS
SELECT api.update_product(p, 1, '{"name": " Blue vase ", "price": 25.50, "description": "Tall"}', seller) AS j FROM fx;
SELECT is((SELECT j ->> 'name' FROM u1), 'Blue vase', 'the seller renames the product (trimmed)');
SELECT is((SELECT (j ->> 'price')::numeric FROM u1), 25.50, 'and reprices it');
SELECT is((SELECT (j ->> 'version')::int FROM u1), 2, 'the result carries the new version');
SELECT is((SELECT count(*)::int FROM "StockLedger" WHERE "productId" = (SELECT p FROM fx)), 1,
          'an edit without a stock change writes no ledger row');

-- Stale version (4)
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 1, '{"price": 1}', (SELECT seller FROM fx)) $$,
                 'MK409', NULL, 'a stale expected version is MK409');
CREATE TEMP TABLE err AS
SELECT pg_temp.error_of(format('SELECT api.update_product(%L, 1, %L)', p, '{"price": 1}')) AS e FROM fx;
SELECT is((SELECT (e -> 'detail' ->> 'currentVersion')::int FROM err), 2, 'the MK409 DETAIL has the current version');
SELECT is((SELECT (e -> 'detail' -> 'current' ->> 'price')::numeric FROM err), 25.50,
          'and the current product, so the client can redo its edit');
SELECT results_eq($$ SELECT price, "version" FROM "Product" WHERE id = (SELECT p FROM fx) $$,
                  $$ VALUES (25.50::numeric(10,2), 2) $$, 'a refused edit changes nothing');

-- Who may edit (4)
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 2, '{"price": 1}', (SELECT other FROM fx)) $$,
                 'MK403', NULL, 'another seller may not edit the product (MK403)');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 2, '{"price": 1}', (SELECT buyer FROM fx)) $$,
                 'MK403', NULL, 'a buyer may not edit it (MK403)');
SELECT is((SELECT (api.update_product(p, 2, '{"price": 24}', admin) ->> 'version')::int FROM fx), 3,
          'an admin may edit any product');
SELECT is((SELECT (api.update_product(p, 3, '{"price": 23}') ->> 'version')::int FROM fx), 4,
          'a DBA call without an actor is allowed');

-- Stock changes and their ledger reasons (6)
SELECT is((SELECT (api.update_product(p, 4, '{"stockDelta": 3}', seller) ->> 'stock')::int FROM fx), 8,
          'a positive stockDelta adds to the stock');
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of((SELECT p FROM fx)) ORDER BY version_after DESC LIMIT 1 $$,
                  $$ VALUES (3, 'RESTOCK', NULL::text, 5) $$, 'recorded as RESTOCK');
SELECT is((SELECT (api.update_product(p, 5, '{"stockDelta": -2}', seller) ->> 'stock')::int FROM fx), 6,
          'a negative stockDelta takes from the stock');
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of((SELECT p FROM fx)) ORDER BY version_after DESC LIMIT 1 $$,
                  $$ VALUES (-2, 'ADJUSTMENT', NULL::text, 6) $$, 'recorded as ADJUSTMENT');
SELECT is((SELECT (api.update_product(p, 6, '{"stock": 10}', seller) ->> 'stock')::int FROM fx), 10,
          'an absolute stock above the current one is a RESTOCK ...');
SELECT results_eq($$ SELECT reason, delta FROM "StockLedger" WHERE "productId" = (SELECT p FROM fx) ORDER BY id DESC LIMIT 1 $$,
                  $$ VALUES ('RESTOCK', 4) $$, '... of the difference');

-- Refused changes (7)
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 7, '{"stockDelta": -11}') $$, 'MK400', NULL,
                 'a stockDelta below zero stock is MK400');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 7, '{"colour": "blue"}') $$, 'MKV00', NULL,
                 'an unknown field is MKV00');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 7, '{"version": 9}') $$, 'MKV00', NULL,
                 'version is not an editable field (MKV00)');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 7, '{"stock": 1, "stockDelta": 1}') $$, 'MKV00', NULL,
                 'stock and stockDelta together are MKV00');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 7, '{"price": "cheap"}') $$, 'MKV00', NULL,
                 'an ill-typed price is MKV00');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), NULL, '{"price": 1}') $$, 'MKV00', NULL,
                 'a missing expected version is MKV00');
SELECT throws_ok($$ SELECT api.update_product('no-such-product', 1, '{"price": 1}') $$, 'MK404', NULL,
                 'an unknown product is MK404');

-- Invariant (1)
SELECT results_eq($$ SELECT stock, "version", pg_temp.ledger_sum(id) FROM "Product" WHERE id = (SELECT p FROM fx) $$,
                  $$ VALUES (10, 7, 10) $$, 'the refusals changed nothing and stock equals the ledger');

SELECT * FROM finish();
ROLLBACK;
