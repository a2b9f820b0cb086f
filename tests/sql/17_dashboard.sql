-- api.dashboard_stats: the operator dashboard's database figures, checked against plain SQL.
BEGIN;
\ir lib/helpers.psql
SELECT plan(9);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p text, ADD o1 text, ADD o2 text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10);
UPDATE fx SET o1 = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET o2 = pg_temp.mk_order(buyer, p, 2);
SELECT api.record_payment(o2, true) FROM fx;

-- Orders by status (4)
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(api.dashboard_stats() -> 'ordersByStatus') k),
          ARRAY['CANCELLED', 'DELIVERED', 'PAID', 'PAYMENT_FAILED', 'PENDING_PAYMENT', 'SHIPPED'],
          'every known status is listed, even with no orders');
SELECT is(api.dashboard_stats() -> 'ordersByStatus',
          (SELECT jsonb_object_agg(s, (SELECT count(*) FROM "Order" o WHERE o.status = s))
           FROM unnest(ARRAY['PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'SHIPPED', 'DELIVERED']) s),
          'the counts equal a plain count per status');
SELECT is((api.dashboard_stats() -> 'ordersLastHour' ->> 'PAID')::int, 1, 'recent orders are counted per status');
SELECT is(api.dashboard_stats() -> 'products', (SELECT to_jsonb(count(*)) FROM "Product"), 'products are counted');

-- Unpaid past the hold window (2)
SELECT is((api.dashboard_stats() ->> 'unpaidPastHold')::int, 0, 'a fresh unpaid order is not past the hold');
UPDATE "Order" SET "createdAt" = now() - interval '1 hour' WHERE id = (SELECT o1 FROM fx);
SELECT is((api.dashboard_stats('30 minutes') ->> 'unpaidPastHold')::int, 1,
          'an unpaid order older than the hold window is counted');

-- Negative stock, possible only without the CHECK (2)
ALTER TABLE "Product" DROP CONSTRAINT "Product_stock_nonnegative";
UPDATE "Product" SET stock = -1 WHERE id = (SELECT p FROM fx);
SELECT is((api.dashboard_stats() ->> 'negativeStock')::int, 1, 'a product below 0 is counted');
SELECT is(api.dashboard_stats() -> 'negativeStockProducts', (SELECT jsonb_build_array(p) FROM fx), 'and named');

-- Arguments (1)
SELECT throws_ok($$ SELECT api.dashboard_stats('0 minutes') $$, 'MKV00', NULL, 'a hold window of 0 is refused');

SELECT * FROM finish();
ROLLBACK;
