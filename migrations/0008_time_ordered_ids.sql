-- New "Order", "OrderItem" and "CartItem" rows get version-7 UUIDs (internal.uuid7, migration
-- 0007) instead of version-4 ones: ids that sort by creation time append to their primary-key
-- index instead of landing on a random page of it. Existing ids are left as they are (they are
-- opaque text to every reader). Also drops the form of internal.checkout_result that 0007
-- replaced.
-- depends: 0007_checkout_uuid7_functions

SET LOCAL lock_timeout = '5s';

-- A default is catalogue-only: no row is rewritten, and the ACCESS EXCLUSIVE lock is brief.
ALTER TABLE "Order" ALTER COLUMN id SET DEFAULT internal.uuid7()::text;
ALTER TABLE "OrderItem" ALTER COLUMN id SET DEFAULT internal.uuid7()::text;
ALTER TABLE "CartItem" ALTER COLUMN id SET DEFAULT internal.uuid7()::text;

DROP FUNCTION IF EXISTS internal.checkout_result(text, text, numeric, jsonb, text, timestamptz, text[], integer[], numeric[]);
