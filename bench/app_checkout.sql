-- bench/app_checkout.sql: one buyer puts one unit of one product in the cart and checks out,
-- through schema app as the HTTP app calls it (token hash in, app.checkout with its limit on
-- unpaid orders), as marketplace_app. Two statements, two transactions, like two requests; early
-- release and the durability barrier as in bench/checkout.sql.
-- Buyers are disjoint per client; buyer n's token hash is n left-padded with zeros to 64 digits
-- (bench/checkout_sql_bench.py seeds them so), which keeps hashing out of the database's CPU.
-- Variables (pgbench -D): products (ids '1'..products), per_client.
\set pid random(1, :products)
\set uid :client_id * :per_client + random(1, :per_client)
SELECT app.add_to_cart(lpad(:uid::text, 64, '0'), :pid::text, 1);
SELECT coalesce(current_setting('mk.flush_pending', true) = 'on', false)::int AS flush_pending
FROM app.checkout(lpad(:uid::text, 64, '0'), '{"city":"X"}'::jsonb, NULL) AS o \gset
\if :flush_pending
SELECT pg_logical_emit_message(true, 'marketplace.durable', '');
\endif
