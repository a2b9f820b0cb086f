-- bench/checkout.sql: one buyer puts one unit of one product in the cart, then checks out.
-- Two statements, two transactions (autocommit), as the HTTP app makes them: two requests, each
-- one function call. The checkout is one function call, one transaction, so the product's row lock
-- is held from its UPDATE to its commit and never across a client round trip.
-- (bench/checkout_one_tx.sql sends both in one transaction, as one pipeline: the hot target run.)
-- Buyers are disjoint per client (client c uses ids c*per_client+1 .. c*per_client+per_client), so
-- two clients never share a cart and no checkout can find its cart emptied by another (MKE00).
-- The connections ask for early release (PGOPTIONS -c mk.release_early=on), as the app's do: a
-- checkout that queued for its product then commits without waiting for the disk, and the sale
-- counts only after the durability barrier the app sends too (a WAL-writing commit that flushes
-- past it).
-- Variables (pgbench -D): pid_lo, pid_hi (product ids are the text of 1..N), per_client.
\set pid random(:pid_lo, :pid_hi)
\set uid :client_id * :per_client + random(1, :per_client)
SELECT api.add_to_cart(:uid, :pid, 1);
SELECT coalesce(current_setting('mk.flush_pending', true) = 'on', false)::int AS flush_pending
FROM api.checkout(:uid, '{"city":"X"}'::jsonb) AS o \gset
\if :flush_pending
SELECT pg_logical_emit_message(true, 'marketplace.durable', '');
\endif
