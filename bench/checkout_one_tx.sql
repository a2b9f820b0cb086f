-- bench/checkout_one_tx.sql: one buyer puts one unit of one product in the cart and checks out,
-- in ONE transaction sent as one pipeline (BEGIN, add_to_cart, checkout, COMMIT without waiting
-- for each answer; psycopg's pipeline mode does the same). One transaction per sale, as the bare
-- update has, and no client round trip while the product is locked: the checkout's lock is taken
-- by its last statement and released by the COMMIT that follows it in the same batch.
-- The connections ask for early release, as the app's do (see bench/checkout.sql); pgbench allows
-- no \gset in a pipeline, so the durability barrier is sent after every sale, queued or not.
-- Buyers are disjoint per client, as in bench/checkout.sql.
-- Variables (pgbench -D): pid_lo, pid_hi, per_client.
\set pid random(:pid_lo, :pid_hi)
\set uid :client_id * :per_client + random(1, :per_client)
\startpipeline
BEGIN;
SELECT api.add_to_cart(:uid, :pid, 1);
SELECT api.checkout(:uid, '{"city":"X"}'::jsonb);
COMMIT;
SELECT pg_logical_emit_message(true, 'marketplace.durable', '');
\endpipeline
