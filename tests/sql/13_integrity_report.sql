-- api.integrity_report: one row per check; all ok on a clean database, and each check notices the
-- damage it is about (made here inside the test transaction, and rolled back with it).
BEGIN;
\ir lib/helpers.psql
SELECT plan(15);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p text, ADD q text, ADD o text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10), q = pg_temp.mk_product(seller, 4);
UPDATE fx SET o = pg_temp.mk_order(buyer, p, 2);

CREATE FUNCTION pg_temp.check_ok(p_name text, p_hold interval DEFAULT '30 minutes')
RETURNS boolean LANGUAGE sql AS $$ SELECT ok FROM api.integrity_report(p_hold) WHERE check_name = p_name $$;
CREATE FUNCTION pg_temp.failing(p_hold interval DEFAULT '30 minutes')
RETURNS SETOF text LANGUAGE sql AS $$ SELECT check_name FROM api.integrity_report(p_hold) WHERE NOT ok $$;

-- Clean (2)
SELECT set_eq($$ SELECT check_name FROM api.integrity_report() $$,
              ARRAY['no_negative_stock', 'versions_positive', 'stock_matches_ledger', 'orders_complete',
                    'no_orders_stuck', 'expiry_failures', 'expiry_running', 'migrations_applied'],
              'integrity_report has one row per check');
SELECT is_empty($$ SELECT * FROM pg_temp.failing() $$, 'every check is ok on a clean database with an order');

-- Stock that bypassed the ledger (3)
ALTER TABLE "Product" DISABLE TRIGGER product_stock_ledger_update;
UPDATE "Product" SET stock = stock + 5 WHERE id = (SELECT q FROM fx);
ALTER TABLE "Product" ENABLE TRIGGER product_stock_ledger_update;
SELECT set_eq($$ SELECT * FROM pg_temp.failing() $$, ARRAY['stock_matches_ledger'],
              'a stock change without a ledger row fails stock_matches_ledger, and only it');
SELECT matches((SELECT detail FROM api.integrity_report() WHERE check_name = 'stock_matches_ledger'),
               (SELECT q FROM fx), 'the detail names the product');
UPDATE "Product" SET stock = stock - 5 WHERE id = (SELECT q FROM fx);  -- recorded as ADJUSTMENT: still off by 5
SELECT ok(NOT pg_temp.check_ok('stock_matches_ledger'), 'later ledgered changes do not hide the gap');

-- Orders stuck past the hold window (3)
UPDATE "Order" SET "createdAt" = now() - interval '1 hour' WHERE id = (SELECT o FROM fx);
SELECT ok(NOT pg_temp.check_ok('no_orders_stuck'), 'an unpaid order older than 30 minutes fails no_orders_stuck');
SELECT ok(pg_temp.check_ok('no_orders_stuck', '2 hours'), 'but not with a 2-hour hold window');
SELECT api.record_payment(o, false) FROM fx;
SELECT ok(NOT pg_temp.check_ok('no_orders_stuck'), 'a PAYMENT_FAILED order past the window is stuck too');

-- Orders without items or with a wrong total (2)
UPDATE "Order" SET total = total + 1 WHERE id = (SELECT o FROM fx);
SELECT ok(NOT pg_temp.check_ok('orders_complete'), 'an order whose total is not the sum of its items fails orders_complete');
INSERT INTO "Order" ("userId", total, "shippingAddress") SELECT buyer, 0, '{"city": "X"}' FROM fx;
SELECT is((SELECT detail FROM api.integrity_report() WHERE check_name = 'orders_complete'),
          '2 orders without items or with a wrong total', 'an order without items counts as well');

-- Negative stock and versions below 1, possible only with the constraints and trigger out of the way (2)
ALTER TABLE "Product" DROP CONSTRAINT "Product_stock_nonnegative";
UPDATE "Product" SET stock = -1 WHERE id = (SELECT p FROM fx);
SELECT ok(NOT pg_temp.check_ok('no_negative_stock'), 'negative stock fails no_negative_stock');
ALTER TABLE "Product" DROP CONSTRAINT "Product_version_positive";
ALTER TABLE "Product" DISABLE TRIGGER product_bump_version;
UPDATE "Product" SET "version" = 0 WHERE id = (SELECT q FROM fx);
ALTER TABLE "Product" ENABLE TRIGGER product_bump_version;
SELECT ok(NOT pg_temp.check_ok('versions_positive'), 'a version of 0 fails versions_positive');

-- Migrations (3)
SELECT ok(pg_temp.check_ok('migrations_applied'), 'migrations_applied is ok while every expected migration is recorded');
DELETE FROM _yoyo_migration WHERE migration_id = '0004_api_functions';
SELECT ok(NOT pg_temp.check_ok('migrations_applied'), 'a missing migration fails migrations_applied');
SELECT is((SELECT detail FROM api.integrity_report() WHERE check_name = 'migrations_applied'),
          'missing: 0004_api_functions', 'and names it');

SELECT * FROM finish();
ROLLBACK;
