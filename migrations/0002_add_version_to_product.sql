-- Adds the optimistic-locking "version" column. Since PostgreSQL 11 a constant DEFAULT is stored
-- in the catalogue, so existing rows read 1 without the table being rewritten; the ACCESS
-- EXCLUSIVE lock is held only for the catalogue change. lock_timeout keeps the ALTER from queueing
-- behind a long transaction (and every query from queueing behind the ALTER): it fails fast instead
-- and can simply be run again.
-- depends: 0001_initial_marketplace_schema

SET LOCAL lock_timeout = '5s';
ALTER TABLE "Product" ADD COLUMN "version" INTEGER NOT NULL DEFAULT 1;
