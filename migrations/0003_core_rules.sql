-- The rules that hold for every writer: schemas for the api and its helpers, the login role of the
-- HTTP app, a stock CHECK, an append-only stock ledger (opened with each product's current stock),
-- idempotency and payment columns on orders, bearer tokens, and the maintenance switch.
-- depends: 0002_add_version_to_product

SET LOCAL lock_timeout = '5s';

CREATE SCHEMA api;
CREATE SCHEMA internal;
COMMENT ON SCHEMA api IS 'The marketplace''s public functions: the only thing the HTTP app may call.';
COMMENT ON SCHEMA internal IS 'Helpers and trigger functions of the api schema; not callable by the app.';

-- The role the HTTP app logs in as: it may only EXECUTE api functions (granted with each function).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'marketplace_app') THEN
        CREATE ROLE marketplace_app LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA api TO marketplace_app;
REVOKE ALL ON SCHEMA internal FROM PUBLIC;

-- NOT VALID then VALIDATE: the scan runs under SHARE UPDATE EXCLUSIVE, which lets writes go on.
ALTER TABLE "Product" ADD CONSTRAINT "Product_stock_nonnegative" CHECK (stock >= 0) NOT VALID;
ALTER TABLE "Product" VALIDATE CONSTRAINT "Product_stock_nonnegative";
ALTER TABLE "Product" ADD CONSTRAINT "Product_version_positive" CHECK ("version" >= 1);

-- A foreign-key check takes FOR KEY SHARE on the referenced row. For "CartItem" and "OrderItem"
-- that row is the product, and on a popular product each such lock beside a checkout's UPDATE
-- turns the row lock into a MultiXact that the next buyer must resolve (measured with pgbench:
-- ~30% fewer sales per second on one product). The trigger internal.product_guard_delete (0004)
-- keeps what the keys guaranteed: ordered products are never deleted, cart lines go with theirs.
ALTER TABLE "CartItem" DROP CONSTRAINT "CartItem_productId_fkey";
ALTER TABLE "OrderItem" DROP CONSTRAINT "OrderItem_productId_fkey";

CREATE TABLE "StockLedger" (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "productId"    text NOT NULL REFERENCES "Product" (id),
    delta          integer NOT NULL CHECK (delta <> 0),
    reason         text NOT NULL CHECK (reason IN ('OPENING_BALANCE', 'CHECKOUT', 'CANCEL',
                       'PAYMENT_FAILED_EXPIRED', 'EXPIRED', 'RESTOCK', 'ADJUSTMENT')),
    "orderId"      text,
    "versionAfter" integer NOT NULL,
    "stockAfter"   integer NOT NULL,
    actor          text NOT NULL DEFAULT current_user,
    "createdAt"    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX "StockLedger_productId_idx" ON "StockLedger" ("productId", id);
CREATE INDEX "StockLedger_orderId_idx" ON "StockLedger" ("orderId") WHERE "orderId" IS NOT NULL;
COMMENT ON TABLE "StockLedger" IS
    'Append-only history of every stock change: sum(delta) per product equals its stock.';

INSERT INTO "StockLedger" ("productId", delta, reason, "versionAfter", "stockAfter")
SELECT id, stock, 'OPENING_BALANCE', "version", stock FROM "Product" WHERE stock <> 0;

ALTER TABLE "Order"
    ADD COLUMN "idempotencyKey"   text,
    ADD COLUMN "requestHash"      text,
    ADD COLUMN "paymentReference" text,
    ADD COLUMN "paidAt"           timestamptz,
    ADD COLUMN "cancelledAt"      timestamptz,
    ADD COLUMN "cancelReason"     text;
CREATE UNIQUE INDEX "Order_userId_idempotencyKey_key" ON "Order" ("userId", "idempotencyKey")
    WHERE "idempotencyKey" IS NOT NULL;
-- The expiry job's scan: only orders that still hold stock without being paid.
CREATE INDEX "Order_unpaid_createdAt_idx" ON "Order" ("createdAt")
    WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED');

CREATE TABLE "ApiToken" (
    "tokenHash"  text PRIMARY KEY,
    "userId"     text NOT NULL REFERENCES "User" (id) ON DELETE CASCADE,
    "createdAt"  timestamptz NOT NULL DEFAULT now(),
    "expiresAt"  timestamptz NOT NULL,
    "revokedAt"  timestamptz
);
CREATE INDEX "ApiToken_userId_idx" ON "ApiToken" ("userId");
COMMENT ON TABLE "ApiToken" IS 'Bearer tokens, stored only as their SHA-256; the token itself is never kept.';

-- Accepted payment-webhook signatures: a signature is accepted once, so a replay is refused.
CREATE TABLE "PaymentWebhookDelivery" (
    signature     text PRIMARY KEY,
    "orderId"     text NOT NULL,
    outcome       text NOT NULL,
    reference     text,
    "receivedAt"  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE internal.settings (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    maintenance         boolean NOT NULL DEFAULT false,
    "maintenanceSince"  timestamptz
);
INSERT INTO internal.settings DEFAULT VALUES;
COMMENT ON TABLE internal.settings IS 'One row of switches; maintenance blocks every api write function.';
