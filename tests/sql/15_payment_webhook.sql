-- The payment webhook: app.payment_webhook verifies each delivery in the database (HMAC-SHA256 of
-- "<timestamp>.<body>" under one of the two newest keys, a 5-minute window, no replay) and records
-- its outcome; api.set_webhook_secret, api.retire_webhook_secrets and api.webhook_secrets manage
-- the keys, which marketplace_app cannot read.
BEGIN;
\ir lib/helpers.psql
SELECT plan(47);

-- Unix seconds now, shifted by p_offset.
CREATE FUNCTION pg_temp.ts(p_offset integer DEFAULT 0) RETURNS text LANGUAGE sql AS $$
    SELECT (extract(epoch FROM now())::bigint + p_offset)::text
$$;
-- A delivery's raw body.
CREATE FUNCTION pg_temp.body(p_order text, p_status text, p_reference text DEFAULT NULL) RETURNS bytea
LANGUAGE sql AS $$
    SELECT convert_to(jsonb_strip_nulls(jsonb_build_object('orderId', p_order, 'status', p_status,
                                                           'reference', p_reference))::text, 'UTF8')
$$;
-- The X-Signature the provider sends: hex HMAC-SHA256 of "<timestamp>.<raw body>".
CREATE FUNCTION pg_temp.sign(p_secret text, p_ts text, p_body bytea) RETURNS text LANGUAGE sql AS $$
    SELECT encode(hmac(convert_to(p_ts || '.', 'UTF8') || p_body, convert_to(p_secret, 'UTF8'), 'sha256'), 'hex')
$$;
-- A delivery signed with p_secret, p_offset seconds away from now.
CREATE FUNCTION pg_temp.deliver(p_secret text, p_body bytea, p_offset integer DEFAULT 0) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT app.payment_webhook(pg_temp.ts(p_offset), pg_temp.sign(p_secret, pg_temp.ts(p_offset), p_body), p_body)
$$;

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
                               'first-webhook-key-01'::text AS k1, 'second-webhook-key-2'::text AS k2,
                               'third-webhook-key-03'::text AS k3;
ALTER TABLE fx ADD p text, ADD o1 text, ADD o2 text, ADD o3 text, ADD o4 text, ADD o5 text;
UPDATE fx SET p = pg_temp.mk_product(seller, 10);
UPDATE fx SET o1 = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET o2 = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET o3 = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET o4 = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET o5 = pg_temp.mk_order(buyer, p, 1);

-- Before any key is set (4)
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, pg_temp.body(o1, 'succeeded')) FROM fx $$, 'MKN03', NULL,
                 'a signed delivery with no key configured is MKN03');
SELECT is(pg_temp.error_of($$ SELECT pg_temp.deliver(k1, pg_temp.body(o1, 'succeeded')) FROM fx $$) -> 'detail',
          '{"retryAfter": 60}'::jsonb, 'its DETAIL asks the provider to retry in a minute');
SELECT throws_ok($$ SELECT app.payment_webhook(NULL, repeat('a', 64), pg_temp.body(o1, 'succeeded')) FROM fx $$,
                 'MKW01', NULL, 'a missing timestamp is MKW01 first, key or no key');
SELECT throws_ok($$ SELECT app.payment_webhook(pg_temp.ts(), 'not-hex', pg_temp.body(o1, 'succeeded')) FROM fx $$,
                 'MKW01', NULL, 'so is a missing or malformed signature');

-- Setting a key (5)
SELECT throws_ok($$ SELECT api.set_webhook_secret('fifteen-bytes!!') $$, 'MKV00', NULL, 'a key under 16 bytes is MKV00');
SELECT throws_ok($$ SELECT api.set_webhook_secret(NULL) $$, 'MKV00', NULL, 'no key is MKV00');
SELECT is(api.set_webhook_secret(k1), '{"added": true, "active": 1}'::jsonb, 'the first key is added and active')
FROM fx;
SELECT is(api.set_webhook_secret(k1), '{"added": false, "active": 1}'::jsonb,
          'setting the newest key again changes nothing (serve sets it at every start)')
FROM fx;
SELECT results_eq($$ SELECT active FROM api.webhook_secrets() $$, ARRAY[true], 'webhook_secrets lists it as active');

-- An accepted delivery (5)
CREATE TEMP TABLE d1 AS SELECT pg_temp.ts() AS ts, pg_temp.body(o1, 'succeeded', 'ref-1') AS body FROM fx;
ALTER TABLE d1 ADD sig text;
UPDATE d1 SET sig = pg_temp.sign((SELECT k1 FROM fx), ts, body);
CREATE TEMP TABLE r1 AS SELECT app.payment_webhook(ts, sig, body) AS j FROM d1;
SELECT is((SELECT j ->> 'status' FROM r1), 'PAID', 'a succeeded delivery signed with the key makes the order PAID');
SELECT is((SELECT j -> 'changed' FROM r1), 'true'::jsonb, 'and says "changed": true');
SELECT results_eq($$ SELECT signature, "orderId", outcome, reference FROM "PaymentWebhookDelivery" $$,
                  $$ SELECT d1.sig, fx.o1, 'succeeded'::text, 'ref-1'::text FROM d1, fx $$,
                  'the signature is kept with its outcome');
SELECT throws_ok($$ SELECT app.payment_webhook(ts, sig, body) FROM d1 $$, 'MKW01', NULL,
                 'the same delivery again is MKW01 (replay)');
SELECT is(pg_temp.deliver(k1, pg_temp.body(o1, 'succeeded', 'ref-1'), -60) -> 'changed', 'false'::jsonb,
          'a newly signed repeat of a recorded outcome answers "changed": false')
FROM fx;

-- Outcomes and the order's state (3)
SELECT is(pg_temp.deliver(k1, pg_temp.body(o2, 'failed')) ->> 'status', 'PAYMENT_FAILED',
          'a failed delivery makes the order PAYMENT_FAILED')
FROM fx;
SELECT api.cancel_order(o5) ->> 'status' FROM fx;
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, pg_temp.body(o5, 'succeeded')) FROM fx $$, 'MKS09', NULL,
                 'a success for a cancelled order is MKS09');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, pg_temp.body('no-such-order', 'succeeded')) FROM fx $$, 'MK404', NULL,
                 'an unknown order is MK404');

-- Refused signatures (7)
CREATE TEMP TABLE kept AS SELECT count(*) AS n FROM "PaymentWebhookDelivery";
SELECT throws_ok($$ SELECT pg_temp.deliver('some-other-key-0000', pg_temp.body(o3, 'succeeded')) FROM fx $$, 'MKW01', NULL,
                 'a signature under an unknown key is MKW01');
SELECT throws_ok($$ SELECT app.payment_webhook(pg_temp.ts(), pg_temp.sign(k1, pg_temp.ts(), pg_temp.body(o3, 'failed')),
                                               pg_temp.body(o3, 'succeeded')) FROM fx $$, 'MKW01', NULL,
                 'a body changed after signing is MKW01');
SELECT throws_ok($$ SELECT app.payment_webhook(pg_temp.ts(1), pg_temp.sign(k1, pg_temp.ts(), pg_temp.body(o3, 'succeeded')),
                                               pg_temp.body(o3, 'succeeded')) FROM fx $$, 'MKW01', NULL,
                 'a timestamp changed after signing is MKW01');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, pg_temp.body(o3, 'succeeded'), -600) FROM fx $$, 'MKW01', NULL,
                 'a correct signature ten minutes old is MKW01');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, pg_temp.body(o3, 'succeeded'), 600) FROM fx $$, 'MKW01', NULL,
                 'and so is one ten minutes ahead');
SELECT is((SELECT count(*) FROM "PaymentWebhookDelivery"), (SELECT n FROM kept),
          'no refused delivery keeps its signature (it could be sent again once fixed)');
SELECT is((SELECT status FROM "Order" WHERE id = (SELECT o3 FROM fx)), 'PENDING_PAYMENT', 'nor touches the order');

-- The signature's hex in any case, but only once (2)
CREATE TEMP TABLE d3 AS SELECT pg_temp.ts(-30) AS ts, pg_temp.body(o3, 'failed', 'ref-3') AS body FROM fx;
ALTER TABLE d3 ADD sig text;
UPDATE d3 SET sig = pg_temp.sign((SELECT k1 FROM fx), ts, body);
SELECT is((SELECT app.payment_webhook(ts, ' ' || upper(sig) || ' ', body) ->> 'status' FROM d3), 'PAYMENT_FAILED',
          'an upper-case signature is accepted');
SELECT throws_ok($$ SELECT app.payment_webhook(ts, sig, body) FROM d3 $$, 'MKW01', NULL,
                 'and its lower-case spelling is a replay');

-- Correctly signed bodies that are not a delivery (7)
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, convert_to('not json', 'UTF8')) FROM fx $$, 'MKV00', NULL,
                 'a body that is not JSON is MKV00');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, convert_to('["succeeded"]', 'UTF8')) FROM fx $$, 'MKV00', NULL,
                 'a JSON body that is not an object is MKV00');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, '\xff'::bytea) FROM fx $$, 'MKV00', NULL,
                 'a body that is not UTF-8 is MKV00');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, pg_temp.body(o3, 'refunded')) FROM fx $$, 'MKV00', NULL,
                 'a status other than succeeded or failed is MKV00');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, convert_to('{"status": "succeeded"}', 'UTF8')) FROM fx $$, 'MKV00', NULL,
                 'a body without orderId is MKV00');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, convert_to('{"orderId": 7, "status": "succeeded"}', 'UTF8')) FROM fx $$,
                 'MKV00', NULL, 'an orderId that is not a string is MKV00');
SELECT is(pg_temp.deliver(k1, convert_to(format('{"orderId": "%s", "status": "failed", "reference": null}', o4), 'UTF8'))
          ->> 'status', 'PAYMENT_FAILED', 'a null reference is as good as none')
FROM fx;

-- Rotating the key (10)
SELECT is(api.set_webhook_secret(k2), '{"added": true, "active": 2}'::jsonb, 'a new key is added beside the old one')
FROM fx;
SELECT results_eq($$ SELECT active FROM api.webhook_secrets() $$, ARRAY[true, true], 'both are active');
SELECT is(pg_temp.deliver(k1, pg_temp.body(o3, 'succeeded')) ->> 'status', 'PAID',
          'a delivery signed with the previous key is still accepted')
FROM fx;
SELECT is(pg_temp.deliver(k2, pg_temp.body(o4, 'succeeded')) ->> 'status', 'PAID',
          'and one signed with the new key')
FROM fx;
SELECT is(api.retire_webhook_secrets(), '{"retired": 1, "active": 1}'::jsonb, 'retiring keeps only the newest key');
SELECT throws_ok($$ SELECT pg_temp.deliver(k1, pg_temp.body(o2, 'succeeded')) FROM fx $$, 'MKW01', NULL,
                 'the retired key''s signatures are MKW01');
SELECT is(pg_temp.deliver(k2, pg_temp.body(o2, 'succeeded')) ->> 'status', 'PAID', 'the newest key''s are accepted')
FROM fx;
SELECT api.set_webhook_secret(k3) FROM fx;
SELECT is(api.set_webhook_secret(repeat('ñ', 8)), '{"added": true, "active": 2}'::jsonb,
          'a key is measured in bytes (eight two-byte characters will do), and only two stay active');
SELECT throws_ok($$ SELECT pg_temp.deliver(k2, pg_temp.body(o2, 'succeeded')) FROM fx $$, 'MKW01', NULL,
                 'the key two rotations back is gone');
SELECT is((SELECT count(*)::int FROM internal.webhook_secret), 2, 'and not kept');

-- The app's role (4)
GRANT SELECT ON fx TO marketplace_app;
SET LOCAL ROLE marketplace_app;
SELECT throws_ok($$ SELECT secret FROM internal.webhook_secret $$, '42501', NULL, 'marketplace_app cannot read the keys');
SELECT throws_ok($$ SELECT api.set_webhook_secret('an-attacker-key-0001') $$, '42501', NULL,
                 'nor set one');
SELECT throws_ok($$ SELECT * FROM api.webhook_secrets() $$, '42501', NULL, 'nor list them');
SELECT is(pg_temp.deliver(k3, pg_temp.body(o1, 'succeeded')) -> 'changed', 'false'::jsonb,
          'but its deliveries are verified against them')
FROM fx;
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
