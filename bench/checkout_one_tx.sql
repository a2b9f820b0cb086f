-- bench/checkout_one_tx.sql: as bench/checkout.sql, but the cart line and the checkout share ONE
-- transaction. The COMMIT is then a separate round trip from the client, taken while the
-- checkout still holds the product's row lock: on a hot product that round trip is serialised.
-- Variables (pgbench -D): pid_lo, pid_hi, per_client.
\set pid random(:pid_lo, :pid_hi)
\set uid :client_id * :per_client + random(1, :per_client)
BEGIN;
SELECT api.add_to_cart(:uid, :pid, 1);
SELECT api.checkout(:uid, '{"city":"X"}'::jsonb);
COMMIT;
