-- Puts the version-4 id defaults back (0007's rollback then restores the old
-- internal.checkout_result and drops internal.uuid7).
SET LOCAL lock_timeout = '5s';

ALTER TABLE "Order" ALTER COLUMN id SET DEFAULT gen_random_uuid()::text;
ALTER TABLE "OrderItem" ALTER COLUMN id SET DEFAULT gen_random_uuid()::text;
ALTER TABLE "CartItem" ALTER COLUMN id SET DEFAULT gen_random_uuid()::text;
