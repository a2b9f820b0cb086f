-- Limits against hoarding: api.limits and api.set_limits (internal.settings), and app.checkout's
-- cap on a buyer's unpaid orders (MKU09: nothing created, the cart kept; idempotent replays exempt).
BEGIN;
\ir lib/helpers.psql
SELECT plan(39);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
                               pg_temp.mk_user('BUYER') AS buyer2,
                               encode(sha256('tok'::bytea), 'hex') AS tok, encode(sha256('tok2'::bytea), 'hex') AS tok2;
ALTER TABLE fx ADD p text;
UPDATE fx SET p = pg_temp.mk_product(seller, 20);
SELECT api.issue_token(buyer, tok) ->> 'userId', api.issue_token(buyer2, tok2) ->> 'userId' FROM fx;

-- The caller's checkout of one unit of p, with an idempotency key; returns the order.
CREATE FUNCTION pg_temp.buy(p_token text, p_key text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT app.add_to_cart(p_token, (SELECT p FROM fx), 1);
    SELECT app.checkout(p_token, '{"city": "Oaxaca"}', p_key);
$$;
-- How many orders a user has.
CREATE FUNCTION pg_temp.orders(p_user text) RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM "Order" WHERE "userId" = p_user
$$;

-- api.limits and api.set_limits (15)
SELECT is(api.limits(), '{"maxUnpaidOrders": 3, "registrationsPerClientPerHour": 20}'::jsonb,
          'the defaults: 3 unpaid orders per buyer, 20 sign-ups per client per hour');
SELECT is(api.set_limits('{"maxUnpaidOrders": 5}'), '{"maxUnpaidOrders": 5, "registrationsPerClientPerHour": 20}'::jsonb,
          'set_limits changes the limits it names, leaves the others and returns them all');
SELECT results_eq($$ SELECT max_unpaid_orders, registrations_per_client_per_hour FROM internal.settings $$,
                  $$ VALUES (5, 20) $$, 'in internal.settings');
SELECT is(api.set_limits('{"registrationsPerClientPerHour": null}') -> 'registrationsPerClientPerHour', 'null'::jsonb,
          'JSON null lifts a limit');
SELECT is(api.set_limits('{"maxUnpaidOrders": 1000000}') -> 'maxUnpaidOrders', '1000000'::jsonb, 'up to 1000000');
SELECT is(api.set_limits('{}'), '{"maxUnpaidOrders": 1000000, "registrationsPerClientPerHour": null}'::jsonb,
          'an empty object changes nothing');
SELECT throws_ok($$ SELECT api.set_limits('{"maxUnpaidOrder": 2}') $$, 'MKV00', NULL, 'an unknown key is MKV00');
SELECT is(pg_temp.error_of($$ SELECT api.set_limits('{"maxUnpaidOrder": 2}') $$) -> 'detail',
          '{"field": "maxUnpaidOrder"}'::jsonb, 'its DETAIL names the key');
SELECT throws_ok($$ SELECT api.set_limits('{"maxUnpaidOrders": 0}') $$, 'MKV00', NULL, 'zero is MKV00');
SELECT throws_ok($$ SELECT api.set_limits('{"maxUnpaidOrders": 2.5}') $$, 'MKV00', NULL, 'a fraction is MKV00');
SELECT throws_ok($$ SELECT api.set_limits('{"maxUnpaidOrders": "3"}') $$, 'MKV00', NULL, 'a string is MKV00');
SELECT throws_ok($$ SELECT api.set_limits('{"registrationsPerClientPerHour": 1000001}') $$, 'MKV00', NULL,
                 'more than 1000000 is MKV00');
SELECT throws_ok($$ SELECT api.set_limits('[]') $$, 'MKV00', NULL, 'limits that are not an object are MKV00');
SELECT throws_ok($$ SELECT api.set_limits('{"maxUnpaidOrders": 2, "registrationsPerClientPerHour": -1}') $$, 'MKV00', NULL,
                 'one bad value among good ones is MKV00');
SELECT is(api.limits(), '{"maxUnpaidOrders": 1000000, "registrationsPerClientPerHour": null}'::jsonb,
          'and a refused call changes nothing');
SELECT api.set_limits('{"maxUnpaidOrders": 3, "registrationsPerClientPerHour": 20}');

-- Up to the limit (2)
CREATE TEMP TABLE o AS SELECT pg_temp.buy(tok, 'k1') ->> 'id' AS o1 FROM fx;
ALTER TABLE o ADD o2 text, ADD o3 text;
UPDATE o SET o2 = (SELECT pg_temp.buy(tok, 'k2') ->> 'id' FROM fx);
UPDATE o SET o3 = (SELECT pg_temp.buy(tok, NULL) ->> 'id' FROM fx);
SELECT is((SELECT array_agg(status ORDER BY "createdAt", id) FROM "Order" WHERE "userId" = (SELECT buyer FROM fx)),
          ARRAY['PENDING_PAYMENT', 'PENDING_PAYMENT', 'PENDING_PAYMENT'], 'a buyer checks out three unpaid orders');
SELECT is(pg_temp.stock_of(p), 17, 'each holding its stock') FROM fx;

-- The fourth is refused and changes nothing (6)
SELECT app.add_to_cart(tok, p, 2) ->> 'quantity' FROM fx;
SELECT throws_ok($$ SELECT app.checkout(tok, '{"city": "Oaxaca"}', 'k4') FROM fx $$, 'MKU09', NULL,
                 'the fourth checkout of a buyer with three unpaid orders is MKU09');
SELECT is(pg_temp.error_of($$ SELECT app.checkout(tok, '{"city": "Oaxaca"}') FROM fx $$) -> 'detail',
          '{"unpaidOrders": 3, "maxUnpaidOrders": 3}'::jsonb, 'its DETAIL gives the count and the limit (with no key too)');
SELECT is(pg_temp.orders(buyer), 3::bigint, 'it creates no order') FROM fx;
SELECT is(app.get_cart(tok) #> '{items,0,quantity}', '2'::jsonb, 'and keeps the cart') FROM fx;
SELECT is(pg_temp.stock_of(p), 17, 'and the stock') FROM fx;
SELECT is(pg_temp.ledger_sum(p), 17, 'with nothing in the ledger') FROM fx;

-- Idempotent replays are never refused (4)
SELECT is((SELECT app.checkout(tok, '{"city": "Oaxaca"}', 'k1') ->> 'id' FROM fx), (SELECT o1 FROM o),
          'a replay of a key the buyer already used returns the original order at the limit');
SELECT is((SELECT app.checkout(tok, '{"city": "Oaxaca"}', 'k1') ->> 'status' FROM fx), 'PENDING_PAYMENT',
          'with its status');
SELECT ok((SELECT pg_temp.orders(buyer) = 3 AND app.get_cart(tok) #> '{items,0,quantity}' = '2' FROM fx),
          'and creates nothing and leaves the cart');
SELECT throws_ok($$ SELECT app.checkout(tok, '{"city": "Puebla"}', 'k1') FROM fx $$, 'MKI22', NULL,
                 'the same key with another address is still MKI22, not MKU09');

-- Which orders count (7)
SELECT api.record_payment(o1, false) ->> 'status' FROM o;
SELECT throws_ok($$ SELECT app.checkout(tok, '{"city": "Oaxaca"}') FROM fx $$, 'MKU09', NULL,
                 'a PAYMENT_FAILED order still counts (its stock is held)');
SELECT is((SELECT pg_temp.buy(tok2, NULL) ->> 'status' FROM fx), 'PENDING_PAYMENT', 'another buyer checks out freely');
SELECT api.record_payment(o2, true) ->> 'status' FROM o;
SELECT is((SELECT app.checkout(tok, '{"city": "Oaxaca"}') ->> 'status' FROM fx), 'PENDING_PAYMENT',
          'a PAID order does not count');
SELECT app.add_to_cart(tok, p, 1) ->> 'quantity' FROM fx;
SELECT throws_ok($$ SELECT app.checkout(tok, '{"city": "Oaxaca"}') FROM fx $$, 'MKU09', NULL,
                 'the buyer is at the limit again');
SELECT is((SELECT app.cancel_order(tok, o3) ->> 'status' FROM fx, o), 'CANCELLED', 'until it cancels an order');
SELECT is((SELECT app.checkout(tok, '{"city": "Oaxaca"}') ->> 'status' FROM fx), 'PENDING_PAYMENT',
          'a CANCELLED order does not count');
SELECT is(pg_temp.orders(buyer), 5::bigint, 'five orders in all, three of them unpaid') FROM fx;

-- Changing the limit (4)
SELECT api.set_limits('{"maxUnpaidOrders": null}');
SELECT is((SELECT pg_temp.buy(tok, NULL) ->> 'status' FROM fx), 'PENDING_PAYMENT', 'a NULL limit lifts it');
SELECT is((SELECT count(*) FROM "Order" WHERE "userId" = (SELECT buyer FROM fx)
             AND status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')), 4::bigint, 'the buyer now holds four unpaid orders');
SELECT api.set_limits('{"maxUnpaidOrders": 5}');
SELECT is((SELECT pg_temp.buy(tok, NULL) ->> 'status' FROM fx), 'PENDING_PAYMENT', 'a raised limit takes effect at once');
SELECT throws_ok($$ SELECT pg_temp.buy(tok, NULL) FROM fx $$, 'MKU09', NULL, 'and holds at its new value');

-- The token (1)
SELECT throws_ok($$ SELECT app.checkout(repeat('0', 64), '{"city": "Oaxaca"}') $$, 'MK401', NULL,
                 'checkout without a valid token is MK401');

SELECT * FROM finish();
ROLLBACK;
