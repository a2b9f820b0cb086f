-- Counts checkouts refused as the client's error and those answered 503 for maintenance apart from
-- the server's failures (error), so that the success rate counts only server-side failures.
-- depends: 0014_smoke_functions

SET LOCAL lock_timeout = '5s';

-- Catalogue-only columns (constant defaults); the CHECKs scan a table of one row per minute.
-- Minutes recorded before this migration counted both in error.
ALTER TABLE internal.checkout_stats
    ADD COLUMN client_error bigint NOT NULL DEFAULT 0 CHECK (client_error >= 0),
    ADD COLUMN maintenance  bigint NOT NULL DEFAULT 0 CHECK (maintenance >= 0);
COMMENT ON COLUMN internal.checkout_stats.client_error IS
    'Checkouts refused as the client''s error other than an empty cart: 401, 400 invalid, 403, 404, 409 TOO_MANY_UNPAID_ORDERS or MAX_PER_BUYER_EXCEEDED, 413, 422, 429.';
COMMENT ON COLUMN internal.checkout_stats.maintenance IS
    'Checkouts answered 503 MAINTENANCE (maintenance mode on).';
COMMENT ON COLUMN internal.checkout_stats.error IS
    'Checkouts that failed on the server: a 5xx other than 503 MAINTENANCE (before 0013_checkout_outcome_columns also client errors and maintenance).';
