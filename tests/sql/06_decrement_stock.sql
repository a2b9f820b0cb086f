-- api.decrement_stock: compare-and-swap on the version, or an atomic conditional decrement.
BEGIN;
\ir lib/helpers.psql
SELECT plan(24);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller;
ALTER TABLE fx ADD p text;
UPDATE fx SET p = pg_temp.mk_product(seller, 5);

-- Compare-and-swap (4)
SELECT is(api.decrement_stock((SELECT p FROM fx), 2, 1), 2, 'CAS with the current version returns the new version');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 3, 'and takes the units');
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of((SELECT p FROM fx)) ORDER BY version_after DESC LIMIT 1 $$,
                  $$ VALUES (-2, 'ADJUSTMENT', NULL::text, 2) $$,
                  'recorded as an ADJUSTMENT with the version after');
SELECT is((SELECT "version" FROM "Product" WHERE id = (SELECT p FROM fx)), 2, 'the row''s version is the returned one');

-- Stale version: MK409, nothing changes (5)
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 1, 1) $$, 'MK409', NULL,
                 'CAS with a stale version is MK409');
CREATE TEMP TABLE err AS SELECT pg_temp.error_of(format('SELECT api.decrement_stock(%L, 1, 1)', p)) AS e FROM fx;
SELECT is((SELECT (e -> 'detail' ->> 'expectedVersion')::int FROM err), 1, 'the DETAIL has expectedVersion');
SELECT is((SELECT (e -> 'detail' ->> 'currentVersion')::int FROM err), 2, 'the DETAIL has currentVersion');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 1, 99) $$, 'MK409', NULL,
                 'a version from the future is MK409 too');
SELECT results_eq($$ SELECT stock, "version" FROM "Product" WHERE id = (SELECT p FROM fx) $$, $$ VALUES (3, 2) $$,
                  'a refused CAS changes neither stock nor version');

-- CAS with the current version but too few units: MK400, not MK409 (2)
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 4, 2) $$, 'MK400', NULL,
                 'CAS asking for more than the stock is MK400');
SELECT is(pg_temp.stock_of((SELECT p FROM fx)), 3, 'and takes nothing');

-- Atomic mode (no expected version) (6)
SELECT is(api.decrement_stock((SELECT p FROM fx), 1), 3, 'an atomic decrement returns the new version');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 3) $$, 'MK400', NULL,
                 'an atomic decrement of more than the stock is MK400');
CREATE TEMP TABLE err2 AS SELECT pg_temp.error_of(format('SELECT api.decrement_stock(%L, 3)', p)) AS e FROM fx;
SELECT is((SELECT e -> 'detail' -> 'products' FROM err2),
          (SELECT jsonb_build_array(jsonb_build_object('productId', p, 'requested', 3, 'available', 2)) FROM fx),
          'MK400''s DETAIL lists the product with requested and available');
SELECT is(api.decrement_stock((SELECT p FROM fx), 2, NULL, 'CHECKOUT', 'order-7'), 4,
          'the last two units go in one atomic decrement');
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of((SELECT p FROM fx)) ORDER BY version_after DESC LIMIT 1 $$,
                  $$ VALUES (-2, 'CHECKOUT', 'order-7', 4) $$,
                  'reason and order id reach the ledger');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 1) $$, 'MK400', NULL,
                 'at stock 0 even one unit is MK400');

-- Unknown product and bad arguments (6)
SELECT throws_ok($$ SELECT api.decrement_stock('no-such-product', 1) $$, 'MK404', NULL, 'an unknown product is MK404');
SELECT throws_ok($$ SELECT api.decrement_stock('no-such-product', 1, 1) $$, 'MK404', NULL,
                 'an unknown product is MK404 in CAS mode too');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 0) $$, 'MKV00', NULL, 'quantity 0 is MKV00');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), -1) $$, 'MKV00', NULL,
                 'a negative quantity (an increment in disguise) is MKV00');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), NULL) $$, 'MKV00', NULL, 'a NULL quantity is MKV00');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 1, NULL, 'RESTOCK') $$, 'MKV00', NULL,
                 'a reason other than CHECKOUT or ADJUSTMENT is MKV00');

-- Invariant (1)
SELECT is(pg_temp.ledger_sum((SELECT p FROM fx)), pg_temp.stock_of((SELECT p FROM fx)), 'stock equals the ledger');

SELECT * FROM finish();
ROLLBACK;
