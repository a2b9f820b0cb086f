-- The marketplace tables as the ORM-based backend created them: products have no "version"
-- column yet, and nothing below the application guarded stock.
-- depends:

CREATE TABLE "User" (
    id             text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    email          text NOT NULL,
    name           text NOT NULL,
    role           text NOT NULL DEFAULT 'BUYER' CHECK (role IN ('BUYER', 'SELLER', 'ADMIN')),
    "passwordHash" text NOT NULL,
    "createdAt"    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX "User_email_key" ON "User" (lower(email));

CREATE TABLE "Product" (
    id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    price        numeric(10,2) NOT NULL CHECK (price >= 0),
    stock        integer NOT NULL,
    "sellerId"   text NOT NULL REFERENCES "User" (id),
    "createdAt"  timestamptz NOT NULL DEFAULT now(),
    "updatedAt"  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX "Product_sellerId_idx" ON "Product" ("sellerId");

CREATE TABLE "CartItem" (
    id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    "userId"     text NOT NULL REFERENCES "User" (id) ON DELETE CASCADE,
    "productId"  text NOT NULL REFERENCES "Product" (id) ON DELETE CASCADE,
    quantity     integer NOT NULL CHECK (quantity > 0),
    "createdAt"  timestamptz NOT NULL DEFAULT now(),
    UNIQUE ("userId", "productId")
);

CREATE TABLE "Order" (
    id                text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    "userId"          text NOT NULL REFERENCES "User" (id),
    status            text NOT NULL DEFAULT 'PENDING_PAYMENT' CHECK (status IN
                          ('PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'SHIPPED', 'DELIVERED')),
    total             numeric(10,2) NOT NULL,
    "shippingAddress" jsonb NOT NULL,
    "createdAt"       timestamptz NOT NULL DEFAULT now(),
    "updatedAt"       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX "Order_userId_idx" ON "Order" ("userId", "createdAt");
CREATE INDEX "Order_status_createdAt_idx" ON "Order" (status, "createdAt");

CREATE TABLE "OrderItem" (
    id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    "orderId"    text NOT NULL REFERENCES "Order" (id) ON DELETE CASCADE,
    "productId"  text NOT NULL REFERENCES "Product" (id),
    quantity     integer NOT NULL CHECK (quantity > 0),
    "unitPrice"  numeric(10,2) NOT NULL
);
CREATE INDEX "OrderItem_orderId_idx" ON "OrderItem" ("orderId");
CREATE INDEX "OrderItem_productId_idx" ON "OrderItem" ("productId");
