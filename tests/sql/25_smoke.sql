-- api.smoke_prepare and the smoke test's place in the figures: its fixture is made once and
-- reused, its product is unlisted but readable, its account cannot log in, its checkouts say
-- "smoke": true, and its orders are left out of report, alerts, ops_snapshot and the dashboard.
BEGIN;
\ir lib/helpers.psql
SELECT plan(31);

CREATE TEMP TABLE base AS
SELECT api.ops_snapshot('30 minutes') AS snap,
       api.checkout_report('1 hour') -> 'ordersByStatus' AS report,
       api.dashboard_stats('30 minutes') -> 'ordersLastHour' AS hour,
       (SELECT jsonb_object_agg(rule, value) FROM api.evaluate_alerts('30 minutes', '1 hour')) AS alerts;

-- Made once, then reused (6)
CREATE TEMP TABLE fx AS SELECT api.smoke_prepare() AS first;
ALTER TABLE fx ADD second jsonb;
UPDATE fx SET second = api.smoke_prepare();
SELECT is((first ->> 'created')::boolean, true, 'the first call makes the fixture') FROM fx;
SELECT is((second ->> 'created')::boolean, false, 'the second call reuses it') FROM fx;
SELECT is(second - 'created', first - 'created', 'same account, product, price and stock') FROM fx;
SELECT is((first ->> 'stock')::int, 1000, 'the product starts with 1000 units') FROM fx;
SELECT is((first ->> 'price')::numeric, 1.00, 'the product costs 1.00') FROM fx;
SELECT is((SELECT count(*) FROM internal.smoke_account)::int, 1, 'one smoke account');

-- The account and its product (5)
SELECT is((SELECT role FROM "User" WHERE id = first ->> 'userId'), 'SELLER', 'the account is a SELLER, the seller of its product') FROM fx;
SELECT is((SELECT "sellerId" FROM "Product" WHERE id = first ->> 'productId'), first ->> 'userId', 'it owns its product') FROM fx;
SELECT is((api.get_product(first ->> 'productId') ->> 'maxPerBuyer')::int, 1, 'maxPerBuyer 1') FROM fx;
SELECT is((app.login((SELECT email FROM "User" WHERE id = first ->> 'userId'), '192.0.2.1', 'anything') ->> 'authenticated')::boolean,
          false, 'nobody logs in as the smoke account') FROM fx;
SELECT is((SELECT count(*) FROM "StockLedger" WHERE "productId" = first ->> 'productId')::int, 1,
          'its stock opened the ledger once') FROM fx;

-- Unlisted, readable by id (3)
SELECT pg_temp.mk_product(pg_temp.mk_user('SELLER'), 3);
SELECT ok(NOT EXISTS (SELECT 1 FROM jsonb_array_elements(api.list_products(200, NULL) -> 'items') i
                      WHERE i ->> 'id' = (SELECT first ->> 'productId' FROM fx)),
          'the smoke product is not listed');
SELECT ok(jsonb_array_length(api.list_products(200, NULL) -> 'items') > 0, 'other products are listed');
SELECT is(api.get_product(first ->> 'productId') ->> 'id', first ->> 'productId', 'the smoke product is readable by id') FROM fx;

-- Its checkout says smoke; another buyer's does not (3)
CREATE TEMP TABLE tok AS
SELECT encode(sha256('smoke-token'::bytea), 'hex') AS smoke, encode(sha256('buyer-token'::bytea), 'hex') AS buyer,
       pg_temp.mk_user('BUYER') AS buyer_id, pg_temp.mk_product(pg_temp.mk_user('SELLER'), 5) AS product;
SELECT api.issue_token(first ->> 'userId', smoke), api.issue_token(buyer_id, buyer) FROM fx, tok;
SELECT app.add_to_cart(smoke, first ->> 'productId', 1) FROM fx, tok;
CREATE TEMP TABLE orders AS SELECT app.checkout(smoke, '{"city": "Smoke"}') AS smoke_order FROM tok;
SELECT app.add_to_cart(buyer, product, 1) FROM tok;
ALTER TABLE orders ADD buyer_order jsonb;
UPDATE orders SET buyer_order = (SELECT app.checkout(buyer, '{"city": "Lima"}') FROM tok);
SELECT is(smoke_order -> 'smoke', 'true'::jsonb, 'a smoke checkout answers "smoke": true') FROM orders;
SELECT ok(NOT buyer_order ? 'smoke', 'another buyer''s checkout has no "smoke"') FROM orders;
SELECT is(pg_temp.stock_of(first ->> 'productId'), 999, 'the smoke checkout took one unit') FROM fx;

-- Left out of the figures: the smoke order is PENDING_PAYMENT, the buyer's too (4)
SELECT is((api.ops_snapshot() -> 'ordersByStatus' ->> 'PENDING_PAYMENT')::int,
          (snap -> 'ordersByStatus' ->> 'PENDING_PAYMENT')::int + 1, 'ops_snapshot counts the buyer''s order, not the smoke one') FROM base;
SELECT is((api.checkout_report('1 hour') -> 'ordersByStatus' ->> 'PENDING_PAYMENT')::int,
          coalesce((report ->> 'PENDING_PAYMENT')::int, 0) + 1, 'checkout_report too') FROM base;
SELECT is((api.dashboard_stats('30 minutes') -> 'ordersLastHour' ->> 'PENDING_PAYMENT')::int,
          coalesce((hour ->> 'PENDING_PAYMENT')::int, 0) + 1, 'the dashboard''s last hour too') FROM base;
-- Cancelled, the smoke order is not a failed or cancelled order for the alerts
SELECT app.cancel_order(smoke, smoke_order ->> 'id') FROM tok, orders;
SELECT is((SELECT value FROM api.evaluate_alerts('30 minutes', '1 hour') WHERE rule = 'failed_or_cancelled_orders'),
          (alerts ->> 'failed_or_cancelled_orders')::bigint, 'a cancelled smoke order fires no alert') FROM base;

-- Stock back, the ledger has both rows of the order (2)
SELECT is(pg_temp.stock_of(first ->> 'productId'), 1000, 'the cancel returned the unit') FROM fx;
SELECT is(ARRAY(SELECT reason || ' ' || delta FROM "StockLedger" WHERE "orderId" = (SELECT smoke_order ->> 'id' FROM orders) ORDER BY id),
          ARRAY['CHECKOUT -1', 'CANCEL 1'], 'CHECKOUT then CANCEL in the ledger');

-- An order an interrupted run left open: not unpaid-past-hold for the alerts or /metrics, and the
-- next run cancels it (3)
SELECT app.add_to_cart(smoke, first ->> 'productId', 1) FROM fx, tok;
UPDATE orders SET smoke_order = (SELECT app.checkout(smoke, '{"city": "Smoke"}') FROM tok);
UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = (SELECT smoke_order ->> 'id' FROM orders);
SELECT is((api.ops_snapshot() ->> 'unpaidPastHold')::int, (snap ->> 'unpaidPastHold')::int,
          'a leftover smoke order is not unpaid past the hold for /metrics') FROM base;
SELECT is((SELECT value FROM api.evaluate_alerts('30 minutes', '1 hour') WHERE rule = 'unpaid_past_hold'),
          (alerts ->> 'unpaid_past_hold')::bigint, 'nor for the alerts') FROM base;
SELECT is((api.smoke_prepare() ->> 'cleanedUp')::int, 1, 'the next run cancels it');

-- Expiry of a leftover smoke order returns its unit like any other (2)
SELECT app.add_to_cart(smoke, first ->> 'productId', 1) FROM fx, tok;
UPDATE orders SET smoke_order = (SELECT app.checkout(smoke, '{"city": "Smoke"}') FROM tok);
UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = (SELECT smoke_order ->> 'id' FROM orders);
SELECT api.expire_pending_orders('30 minutes');
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT smoke_order ->> 'id' FROM orders)), 'CANCELLED', 'expiry cancels it') FROM fx;
SELECT is(pg_temp.stock_of(first ->> 'productId'), pg_temp.ledger_sum(first ->> 'productId'), 'stock equals the ledger') FROM fx;

-- Topped up below 10 units, through the ledger (2)
UPDATE "Product" SET stock = 4 WHERE id = (SELECT first ->> 'productId' FROM fx);
SELECT is((api.smoke_prepare() ->> 'stock')::int, 1000, 'fewer than 10 units: topped up to 1000');
SELECT is((SELECT reason FROM "StockLedger" WHERE "productId" = (SELECT first ->> 'productId' FROM fx) ORDER BY id DESC LIMIT 1),
          'RESTOCK', 'recorded as a RESTOCK');

-- Maintenance (1)
SELECT api.set_maintenance(true);
SELECT is(pg_temp.error_of('SELECT api.smoke_prepare()') ->> 'sqlstate', 'MK503', 'maintenance: MK503');

SELECT * FROM finish();
ROLLBACK;
