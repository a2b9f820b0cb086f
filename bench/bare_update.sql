-- bench/bare_update.sql: the floor a checkout is compared with. One conditional decrement of one
-- product, exactly what the checkout's hot-row UPDATE does, with the same "Product" triggers
-- (version bump, ledger row), but none of the checkout's other work.
-- Variables (pgbench -D): pid_lo, pid_hi (product ids are the text of 1..N; lo = hi for one hot row).
\set pid random(:pid_lo, :pid_hi)
UPDATE "Product" SET stock = stock - 1 WHERE id = :pid AND stock >= 1;
