-- api.set_maintenance and api.maintenance_status: while maintenance is on, every write function
-- raises MK503 and changes nothing; reads keep working. The app schema's writes go through the
-- same gate, except login and logout.
BEGIN;
\ir lib/helpers.psql
SELECT plan(63);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
                               pg_temp.mk_user('ADMIN') AS admin,
                               encode(sha256('buyer'::bytea), 'hex') AS tb, encode(sha256('seller'::bytea), 'hex') AS ts,
                               encode(sha256('admin'::bytea), 'hex') AS ta;
ALTER TABLE fx ADD p text, ADD o text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10);
UPDATE fx SET o = pg_temp.mk_order(buyer, p, 1);
SELECT api.add_to_cart(buyer, p, 1) FROM fx;
UPDATE "Order" SET "createdAt" = now() - interval '1 hour' WHERE id = (SELECT o FROM fx);
SELECT api.issue_token(buyer, tb) ->> 'userId', api.issue_token(seller, ts) ->> 'userId',
       api.issue_token(admin, ta) ->> 'userId' FROM fx;
SELECT api.set_webhook_secret('maintenance-test-key');
-- A delivery for the order, signed with the key above.
CREATE FUNCTION pg_temp.webhook(p_order text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT app.payment_webhook(t, encode(hmac(convert_to(t || '.', 'UTF8') || b, 'maintenance-test-key', 'sha256'), 'hex'), b)
    FROM (SELECT extract(epoch FROM now())::bigint::text AS t,
                 convert_to(jsonb_build_object('orderId', p_order, 'status', 'succeeded')::text, 'UTF8') AS b) d
$$;

-- Every volatile api function except set_maintenance itself is a write, and this file covers each.
-- Some are ungated by design (sql/api/auth.sql): issue_token (an admin must be able to log in to
-- end maintenance), revoke_token (logout) and create_user (DBAs and the CLI).
-- record_checkout_stats records the HTTP workers' figures, which go on during maintenance (the
-- 503s are figures too). The owner's settings (set_limits, set_webhook_secret,
-- retire_webhook_secrets, lift_login_throttle) are not the marketplace's data, and neither is the
-- expiry's bookkeeping (record_expiry_run, schedule_expiry, unschedule_expiry): the expiry runs
-- during maintenance. (2)
SELECT set_eq($$ SELECT proname::text FROM pg_proc WHERE pronamespace = 'api'::regnamespace
                 AND provolatile = 'v' AND proname <> 'set_maintenance' $$,
              ARRAY['add_to_cart', 'set_cart_quantity', 'remove_from_cart', 'checkout', 'decrement_stock',
                    'update_product', 'create_product', 'cancel_order', 'record_payment', 'expire_pending_orders',
                    'register_user', 'smoke_prepare', 'issue_token', 'revoke_token', 'create_user', 'record_checkout_stats',
                    'set_limits', 'set_webhook_secret', 'retire_webhook_secrets', 'lift_login_throttle',
                    'record_expiry_run', 'schedule_expiry', 'unschedule_expiry'],
              'the write functions are exactly the ones tested below');
SELECT is_empty($$ SELECT proname FROM pg_proc WHERE pronamespace = 'api'::regnamespace AND provolatile = 'v'
                   AND proname NOT IN ('set_maintenance', 'issue_token', 'revoke_token', 'create_user',
                                       'expire_pending_orders',
                                       'record_checkout_stats', 'set_limits', 'set_webhook_secret',
                                       'retire_webhook_secrets', 'lift_login_throttle',
                                       'record_expiry_run', 'schedule_expiry', 'unschedule_expiry')
                   AND prosrc NOT LIKE '%internal.assert_writable()%' $$,
                'every other write function passes the maintenance gate first');

-- The app schema's writes are exactly the ones tested below (1)
SELECT set_eq($$ SELECT proname::text FROM pg_proc WHERE pronamespace = 'app'::regnamespace AND provolatile = 'v' $$,
              ARRAY['add_to_cart', 'set_cart_quantity', 'remove_from_cart', 'checkout', 'create_product',
                    'update_product', 'cancel_order', 'register', 'payment_webhook',
                    'login_parameters', 'login', 'logout', 'record_checkout_stats', 'set_maintenance'],
              'the app schema''s volatile functions are exactly the ones tested below');

-- Switching on (3)
SELECT is(api.maintenance_status() -> 'maintenance', 'false'::jsonb, 'maintenance is off by default');
SELECT is(api.set_maintenance(true) -> 'maintenance', 'true'::jsonb, 'set_maintenance(true) turns it on');
SELECT is((api.maintenance_status() ->> 'since')::timestamptz, now(), 'maintenance_status says since when');

-- Every gated write raises MK503 (12)
SELECT throws_ok($$ SELECT api.add_to_cart((SELECT buyer FROM fx), (SELECT p FROM fx), 1) $$, 'MK503', NULL, 'add_to_cart is MK503');
SELECT throws_ok($$ SELECT api.set_cart_quantity((SELECT buyer FROM fx), (SELECT p FROM fx), 2) $$, 'MK503', NULL, 'set_cart_quantity is MK503');
SELECT throws_ok($$ SELECT api.remove_from_cart((SELECT buyer FROM fx), (SELECT p FROM fx)) $$, 'MK503', NULL, 'remove_from_cart is MK503');
SELECT throws_ok($$ SELECT api.checkout((SELECT buyer FROM fx), '{"city": "Oaxaca"}') $$, 'MK503', NULL, 'checkout is MK503');
SELECT throws_ok($$ SELECT api.decrement_stock((SELECT p FROM fx), 1) $$, 'MK503', NULL, 'decrement_stock is MK503');
SELECT throws_ok($$ SELECT api.update_product((SELECT p FROM fx), 2, '{"price": 1}') $$, 'MK503', NULL, 'update_product is MK503');
SELECT throws_ok($$ SELECT api.create_product((SELECT seller FROM fx), 'Mug', 1, 1) $$, 'MK503', NULL, 'create_product is MK503');
SELECT throws_ok($$ SELECT api.cancel_order((SELECT o FROM fx)) $$, 'MK503', NULL, 'cancel_order is MK503');
SELECT throws_ok($$ SELECT api.record_payment((SELECT o FROM fx), true) $$, 'MK503', NULL, 'record_payment is MK503');

SELECT throws_ok($$ SELECT api.register_user('new@test.invalid', 'New', repeat('h', 40)) $$, 'MK503', NULL,
                 'register_user is MK503');
SELECT throws_ok($$ SELECT api.smoke_prepare() $$, 'MK503', NULL, 'smoke_prepare is MK503');

-- The app schema's writes pass the same gate (11)
SELECT throws_ok($$ SELECT app.add_to_cart(tb, p, 1) FROM fx $$, 'MK503', NULL, 'app.add_to_cart is MK503');
SELECT throws_ok($$ SELECT app.set_cart_quantity(tb, p, 2) FROM fx $$, 'MK503', NULL, 'app.set_cart_quantity is MK503');
SELECT throws_ok($$ SELECT app.remove_from_cart(tb, p) FROM fx $$, 'MK503', NULL, 'app.remove_from_cart is MK503');
SELECT throws_ok($$ SELECT app.checkout(tb, '{"city": "Oaxaca"}') FROM fx $$, 'MK503', NULL, 'app.checkout is MK503');
SELECT throws_ok($$ SELECT app.create_product(ts, 'Mug', 1, 1) FROM fx $$, 'MK503', NULL, 'app.create_product is MK503');
SELECT throws_ok($$ SELECT app.update_product(ts, p, 2, '{"price": 1}') FROM fx $$, 'MK503', NULL,
                 'app.update_product is MK503');
SELECT throws_ok($$ SELECT app.cancel_order(tb, o) FROM fx $$, 'MK503', NULL, 'app.cancel_order is MK503');
SELECT throws_ok($$ SELECT app.register('192.0.2.1', 'new@test.invalid', 'New',
                                        'scrypt$131072$8$1$' || repeat('s', 22) || '$' || repeat('k', 43)) $$,
                 'MK503', NULL, 'app.register is MK503');
SELECT is_empty($$ SELECT 1 FROM internal.registration $$, 'and the refused sign-up uses none of the client''s limit');
SELECT throws_ok($$ SELECT pg_temp.webhook(o) FROM fx $$, 'MK503', NULL, 'app.payment_webhook is MK503');
SELECT is_empty($$ SELECT 1 FROM "PaymentWebhookDelivery" $$, 'and the refused webhook''s signature is not kept');

-- The deliberately ungated writes (16)
SELECT lives_ok($$ SELECT api.issue_token((SELECT seller FROM fx), repeat('b', 64)) $$,
                'issue_token works, so an admin can log in to end maintenance');
SELECT lives_ok($$ SELECT api.revoke_token(repeat('b', 64)) $$, 'revoke_token (logout) works');
SELECT lives_ok($$ SELECT api.create_user('dba-made@test.invalid', 'Admin', repeat('h', 40), 'ADMIN') $$,
                'create_user (DBA and CLI only) works');
SELECT lives_ok($$ SELECT api.set_limits('{"maxUnpaidOrders": 4}') $$, 'set_limits (the owner''s setting) works');
SELECT lives_ok($$ SELECT api.set_webhook_secret('another-maintenance-key') $$, 'set_webhook_secret works');
SELECT lives_ok($$ SELECT api.retire_webhook_secrets() $$, 'retire_webhook_secrets works');
SELECT lives_ok($$ SELECT api.lift_login_throttle('nobody@test.invalid') $$, 'lift_login_throttle works');
SELECT lives_ok($$ SELECT api.record_expiry_run('worker', 0, '1 minute') $$, 'record_expiry_run works');
SELECT isnt(pg_temp.error_of($$ SELECT * FROM api.schedule_expiry() $$) ->> 'sqlstate', 'MK503',
            'schedule_expiry is not gated (it may still refuse when pg_cron is not loaded)');
SELECT lives_ok($$ SELECT * FROM api.unschedule_expiry() $$, 'unschedule_expiry works');
SELECT lives_ok($$ SELECT app.login_parameters('admin@test.invalid', '127.0.0.1') $$,
                'app.login_parameters works, for the same reason as issue_token');
SELECT is(app.login('admin@test.invalid', '127.0.0.1', 'wrong') -> 'authenticated', 'false'::jsonb,
          'app.login works');
SELECT is((SELECT count(*)::int FROM internal.login_attempt), 1, 'and records a failure for the throttle');
SELECT lives_ok($$ SELECT app.record_checkout_stats('[]') $$, 'app.record_checkout_stats works');
SELECT is((SELECT app.logout(ts) FROM fx), '{"revoked": true}'::jsonb, 'app.logout works');
SELECT throws_ok($$ SELECT app.set_maintenance(tb, false) FROM fx $$, 'MK403', NULL,
                 'app.set_maintenance needs an ADMIN token, maintenance or not');

-- The MK503 DETAIL says so in JSON (1)
SELECT is((pg_temp.error_of(format('SELECT api.cancel_order(%L)', o)) -> 'detail' -> 'maintenance'), 'true'::jsonb,
          'the MK503 DETAIL is JSON with "maintenance": true')
FROM fx;

-- Reads keep working (10)
SELECT lives_ok($$ SELECT api.get_product((SELECT p FROM fx)) $$, 'get_product works');
SELECT lives_ok($$ SELECT api.list_products() $$, 'list_products works');
SELECT lives_ok($$ SELECT api.get_cart((SELECT buyer FROM fx)) $$, 'get_cart works');
SELECT lives_ok($$ SELECT api.get_order((SELECT o FROM fx)) $$, 'get_order works');
SELECT lives_ok($$ SELECT api.list_orders((SELECT buyer FROM fx)) $$, 'list_orders works');
SELECT lives_ok($$ SELECT * FROM api.error_codes() $$, 'error_codes works');
SELECT lives_ok($$ SELECT * FROM api.integrity_report() $$, 'integrity_report works');
SELECT lives_ok($$ SELECT api.maintenance_status() $$, 'maintenance_status works');
SELECT lives_ok($$ SELECT * FROM api.expiry_status() $$, 'expiry_status works');
SELECT is((SELECT (api.get_cart(buyer) -> 'items' -> 0 ->> 'quantity')::int FROM fx), 1, 'the cart is readable and untouched');

-- Nothing changed while it was on (3)
SELECT results_eq($$ SELECT stock, "version" FROM "Product" WHERE id = (SELECT p FROM fx) $$, $$ VALUES (9, 2) $$,
                  'stock and version unchanged');
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT o FROM fx)), 'PENDING_PAYMENT', 'the order unchanged');
SELECT is((api.set_maintenance(true) ->> 'since')::timestamptz, now(), 'switching it on twice keeps it on');
-- The expiry job is housekeeping, not a client's write: it runs during maintenance, so a rollback
-- can drain the unpaid orders (which can then only expire: payments are paused) before it starts.
SELECT is(api.expire_pending_orders(), 1, 'expiry runs during maintenance and returns the stock');

-- Switching off (4)
SELECT is(app.set_maintenance(ta, false), '{"maintenance": false, "since": null}'::jsonb,
          'an ADMIN''s token turns it off through app.set_maintenance')
FROM fx;
SELECT is((SELECT (api.add_to_cart(buyer, p, 1) ->> 'quantity')::int FROM fx), 2, 'writes work again');
SELECT is(api.expire_pending_orders(), 0, 'nothing is left to expire afterwards');
SELECT throws_ok($$ SELECT api.set_maintenance(NULL) $$, 'MKV00', NULL, 'set_maintenance(NULL) is MKV00');

SELECT * FROM finish();
ROLLBACK;
