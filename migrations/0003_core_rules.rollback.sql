SET LOCAL lock_timeout = '5s';
DROP TABLE internal.settings;
DROP TABLE "PaymentWebhookDelivery";
DROP TABLE "ApiToken";
DROP INDEX "Order_unpaid_createdAt_idx";
DROP INDEX "Order_userId_idempotencyKey_key";
ALTER TABLE "Order"
    DROP COLUMN "idempotencyKey",
    DROP COLUMN "requestHash",
    DROP COLUMN "paymentReference",
    DROP COLUMN "paidAt",
    DROP COLUMN "cancelledAt",
    DROP COLUMN "cancelReason";
DROP TABLE "StockLedger";
DELETE FROM "CartItem" c WHERE NOT EXISTS (SELECT 1 FROM "Product" p WHERE p.id = c."productId");
ALTER TABLE "CartItem" ADD CONSTRAINT "CartItem_productId_fkey"
    FOREIGN KEY ("productId") REFERENCES "Product" (id) ON DELETE CASCADE;
ALTER TABLE "OrderItem" ADD CONSTRAINT "OrderItem_productId_fkey"
    FOREIGN KEY ("productId") REFERENCES "Product" (id);
ALTER TABLE "Product" DROP CONSTRAINT "Product_version_positive";
ALTER TABLE "Product" DROP CONSTRAINT "Product_stock_nonnegative";
DROP SCHEMA internal;
DROP SCHEMA api;
-- The marketplace_app role is cluster-wide and may serve other databases of the cluster: kept.
