-- api.payment_webhook: a verified delivery is accepted once, together with its payment outcome.
BEGIN;
\ir lib/helpers.psql
SELECT plan(11);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
                               repeat('1', 64) AS s1, repeat('2', 64) AS s2, repeat('3', 64) AS s3, repeat('4', 64) AS s4;
ALTER TABLE fx ADD p text, ADD o text, ADD o2 text;
UPDATE fx SET p = pg_temp.mk_product(seller, 5);
UPDATE fx SET o = pg_temp.mk_order(buyer, p, 1);
UPDATE fx SET o2 = pg_temp.mk_order(buyer, p, 1);

CREATE TEMP TABLE r AS SELECT api.payment_webhook(s1, o, true, 'ref-1') AS j FROM fx;
SELECT is((SELECT j ->> 'status' FROM r), 'PAID', 'a succeeded delivery makes the order PAID');
SELECT is((SELECT j -> 'changed' FROM r), 'true'::jsonb, 'and says "changed": true');
SELECT results_eq($$ SELECT signature, "orderId", outcome, reference FROM "PaymentWebhookDelivery" $$,
                  $$ SELECT s1, o, 'succeeded'::text, 'ref-1'::text FROM fx $$, 'the signature is kept with its outcome');
SELECT throws_ok($$ SELECT api.payment_webhook((SELECT s1 FROM fx), (SELECT o FROM fx), true, 'ref-1') $$, 'MK401', NULL,
                 'the same signature again is MK401');
SELECT is((SELECT api.payment_webhook(s2, o, true, 'ref-1') -> 'changed' FROM fx), 'false'::jsonb,
          'a newly signed repeat of a recorded outcome changes nothing');
SELECT is((SELECT api.payment_webhook(s3, o2, false) ->> 'status' FROM fx), 'PAYMENT_FAILED',
          'a failed delivery makes the order PAYMENT_FAILED');
SELECT throws_ok($$ SELECT api.payment_webhook((SELECT s4 FROM fx), 'no-such-order', true) $$, 'MK404', NULL,
                 'an unknown order is MK404');
SELECT is_empty($$ SELECT 1 FROM "PaymentWebhookDelivery" WHERE signature = (SELECT s4 FROM fx) $$,
                'a refused delivery keeps no signature (it can be sent again)');
SELECT throws_ok($$ SELECT api.payment_webhook('not-hex', (SELECT o FROM fx), true) $$, 'MKV00', NULL,
                 'a malformed signature is MKV00');
SELECT throws_ok($$ SELECT api.payment_webhook((SELECT s4 FROM fx), '', true) $$, 'MKV00', NULL, 'an empty order id is MKV00');
SELECT api.cancel_order(o2) FROM fx;
SELECT throws_ok($$ SELECT api.payment_webhook((SELECT s4 FROM fx), (SELECT o2 FROM fx), true) $$, 'MKS09', NULL,
                 'a success for a cancelled order is MKS09');

SELECT * FROM finish();
ROLLBACK;
