-- api.set_maintenance and api.maintenance_status: while maintenance is on, every write function
-- raises MK503 and changes nothing; reads keep working.
BEGIN;
\ir lib/helpers.psql
SELECT plan(39);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer;
ALTER TABLE fx ADD p text, ADD o text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10);
UPDATE fx SET o = pg_temp.mk_order(buyer, p, 1);
SELECT api.add_to_cart(buyer, p, 1) FROM fx;
UPDATE "Order" SET "createdAt" = now() - interval '1 hour' WHERE id = (SELECT o FROM fx);

-- Every volatile api function except set_maintenance itself is a write, and this file covers each.
-- Three are ungated by design (sql/api/auth.sql): issue_token (an admin must be able to log in to
-- end maintenance), revoke_token (logout) and create_user (DBAs and the CLI). payment_webhook is
-- gated through the api.record_payment it calls. record_checkout_stats records the HTTP workers'
-- figures, which go on during maintenance (the 503s are figures too). begin_login records login
-- attempts for the throttle, on the way to issue_token. (2)
SELECT set_eq($$ SELECT proname::text FROM pg_proc WHERE pronamespace = 'api'::regnamespace
                 AND provolatile = 'v' AND proname <> 'set_maintenance' $$,
              ARRAY['add_to_cart', 'set_cart_quantity', 'remove_from_cart', 'checkout', 'decrement_stock',
                    'update_product', 'create_product', 'cancel_order', 'record_payment', 'expire_pending_orders',
                    'register_user', 'payment_webhook', 'issue_token', 'revoke_token', 'create_user',
                    'record_checkout_stats', 'begin_login'],
              'the write functions are exactly the ones tested below');
SELECT is_empty($$ SELECT proname FROM pg_proc WHERE pronamespace = 'api'::regnamespace AND provolatile = 'v'
                   AND proname NOT IN ('set_maintenance', 'issue_token', 'revoke_token', 'create_user', 'payment_webhook',
                                       'record_checkout_stats', 'begin_login')
                   AND prosrc NOT LIKE '%internal.assert_writable()%' $$,
                'every other write function passes the maintenance gate first');

-- Switching on (3)
SELECT is(api.maintenance_status() -> 'maintenance', 'false'::jsonb, 'maintenance is off by default');
SELECT is(api.set_maintenance(true) -> 'maintenance', 'true'::jsonb, 'set_maintenance(true) turns it on');
SELECT is((api.maintenance_status() ->> 'since')::timestamptz, now(), 'maintenance_status says since when');

-- Every gated write raises MK503 (10 + 3)
SELECT throws_ok($$ SELECT api.add_to_cart((SELECT buyer FROM fx), (SELECT p FROM fx), 1) $$, 'MK503', NULL, 'add_to_cart is MK503');
SELECT throws_ok($$ SELECT api.set_cart_quantity((SELECT buyer FROM fx), (SELECT p FROM fx), 2) $$, 'MK503', NULL, 'set_cart_quantity is MK503');
SELECT throws_ok($$ SELECT api.remove_from_cart((SELECT buyer FROM fx), (SELECT p FROM fx)) $$, 'MK503', NULL, 'remove_from_cart is MK503');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Oaxaca"}') $$, 'MK503', NULL, 'checkout is MK503');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 1) $$, 'MK503', NULL, 'decrement_stock is MK503');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 2, '{"price": 1}') $$, 'MK503', NULL, 'update_product is MK503');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', 1, 1) $$, 'MK503', NULL, 'create_product is MK503');
SELECT throws_ok($$ SELECT api.cancel_order((SELECT o FROM fx)) $$, 'MK503', NULL, 'cancel_order is MK503');
SELECT throws_ok($$ SELECT api.record_payment((SELECT o FROM fx), true) $$, 'MK503', NULL, 'record_payment is MK503');
SELECT throws_ok($$ SELECT api.expire_pending_orders() $$, 'MK503', NULL, 'expire_pending_orders is MK503');

SELECT throws_ok($$ SELECT api.register_user('new@test.invalid', 'New', repeat('h', 40)) $$, 'MK503', NULL,
                 'register_user is MK503');
SELECT throws_ok($$ SELECT api.payment_webhook(repeat('a', 64), (SELECT o FROM fx), true, 'ref') $$, 'MK503', NULL,
                 'payment_webhook is MK503');
SELECT is_empty($$ SELECT 1 FROM "PaymentWebhookDelivery" $$, 'and the refused webhook''s signature is not kept');

-- The deliberately ungated writes (4)
SELECT lives_ok($$ SELECT api.issue_token((SELECT seller FROM fx), repeat('b', 64)) $$,
                'issue_token works, so an admin can log in to end maintenance');
SELECT lives_ok($$ SELECT api.revoke_token(repeat('b', 64)) $$, 'revoke_token (logout) works');
SELECT lives_ok($$ SELECT api.begin_login('admin@test.invalid', '127.0.0.1') $$,
                'begin_login (the throttle''s record) works, for the same reason as issue_token');
SELECT lives_ok($$ SELECT api.create_user('dba-made@test.invalid', 'Admin', repeat('h', 40), 'ADMIN') $$,
                'create_user (DBA and CLI only) works');

-- The MK503 DETAIL says so in JSON (1)
SELECT is((pg_temp.error_of('SELECT api.expire_pending_orders()') -> 'detail' -> 'maintenance'), 'true'::jsonb,
          'the MK503 DETAIL is JSON with "maintenance": true');

-- Reads keep working (9)
SELECT lives_ok($$ SELECT api.get_product((SELECT p FROM fx)) $$, 'get_product works');
SELECT lives_ok($$ SELECT api.list_products() $$, 'list_products works');
SELECT lives_ok($$ SELECT api.get_cart((SELECT buyer FROM fx)) $$, 'get_cart works');
SELECT lives_ok($$ SELECT api.get_order((SELECT o FROM fx)) $$, 'get_order works');
SELECT lives_ok($$ SELECT api.list_orders((SELECT buyer FROM fx)) $$, 'list_orders works');
SELECT lives_ok($$ SELECT * FROM api.error_codes() $$, 'error_codes works');
SELECT lives_ok($$ SELECT * FROM api.integrity_report() $$, 'integrity_report works');
SELECT lives_ok($$ SELECT api.maintenance_status() $$, 'maintenance_status works');
SELECT is((SELECT (api.get_cart(buyer) -> 'items' -> 0 ->> 'quantity')::int FROM fx), 1, 'the cart is readable and untouched');

-- Nothing changed while it was on (3)
SELECT results_eq($$ SELECT stock, "version" FROM "Product" WHERE id = (SELECT p FROM fx) $$, $$ VALUES (9, 2) $$,
                  'stock and version unchanged');
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT o FROM fx)), 'PENDING_PAYMENT', 'the order unchanged');
SELECT is((api.set_maintenance(true) ->> 'since')::timestamptz, now(), 'switching it on twice keeps it on');

-- Switching off (4)
SELECT is(api.set_maintenance(false), '{"maintenance": false, "since": null}'::jsonb, 'set_maintenance(false) turns it off');
SELECT is((SELECT (api.add_to_cart(buyer, p, 1) ->> 'quantity')::int FROM fx), 2, 'writes work again');
SELECT is(api.expire_pending_orders(), 1, 'the expiry job works again');
SELECT throws_ok($$ SELECT api.set_maintenance(NULL) $$, 'MKV00', NULL, 'set_maintenance(NULL) is MKV00');

SELECT * FROM finish();
ROLLBACK;
