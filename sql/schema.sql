-- sql/schema.sql: the current shape of the marketplace database, what migrations 0001 to the
-- latest have built, in one readable file: schemas, roles and their grants, the extension, the id
-- generator the tables default to, the tables with their constraints, indexes, comments and
-- grants, and the rows a new database starts with. The functions and triggers are defined in
-- sql/internal/, sql/api/ and sql/app/, applied after this file (tools/sqlmig.py names the order).
--
-- This file is not a migration: a database is upgraded by migrations/ only. A change here goes
-- with a hand-written migration that makes the same change to a live database (ALTER TABLE ...,
-- written with its locks in mind), and tests/sql/test_migrations.py proves that the two agree: it
-- diffs the whole catalogue of a database built from migrations/ against one built from sql/.
-- Tables keep the quoted names of CONTRACT.md §1, in schema public.

-- ==== Schemas and roles ====================================================================

CREATE SCHEMA api;
COMMENT ON SCHEMA api IS 'The marketplace''s public functions: the only thing the HTTP app may call.';
CREATE SCHEMA internal;
COMMENT ON SCHEMA internal IS 'Helpers and trigger functions of the api schema; not callable by the app.';
REVOKE ALL ON SCHEMA internal FROM PUBLIC;
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS
    'What the HTTP app may call: one function per route, each identifying its caller only by the SHA-256 of a bearer token it was given (or needing no identity).';
REVOKE ALL ON SCHEMA app FROM PUBLIC;

-- Any role could create objects in public and so plant a function or operator that a careless
-- search_path resolves (CVE-2018-1058); only the owner creates there.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The role the HTTP app logs in as (a cluster-wide object, so it may exist already). It may use
-- schema app and nothing else: EXECUTE is granted beside each function of sql/app/, and it holds
-- no privilege on any table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'marketplace_app') THEN
        CREATE ROLE marketplace_app LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA app TO marketplace_app;

-- Tokens (gen_random_bytes) and webhook signatures (hmac) are made and checked in the database.
-- pgcrypto is a trusted extension: the database owner may create it without superuser.
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;

-- ==== The id generator =====================================================================
-- Defined here rather than in sql/internal/ because the tables below default to it.

-- internal.uuid7: a version-7 UUID (RFC 9562): the first 48 bits are Unix time in milliseconds,
-- the rest random (74 random bits, against 122 in version 4). Ids made by it sort by creation
-- time, so a new row's key lands on the right-most page of its primary-key index instead of a
-- random one: after each checkpoint, far fewer index pages are written to the WAL in full. It
-- is the default id of "Order", "OrderItem" and "CartItem" (migration 0008), and internal.checkout
-- names its orders with it.
-- One SELECT of one expression, no SET clause: the planner inlines it into the caller.
-- Raises: nothing. Callers: internal.checkout, column defaults.
CREATE OR REPLACE FUNCTION internal.uuid7()
RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    -- Overwrite bytes 1-6 of a random (version 4) UUID with the time, then turn its version
    -- nibble 0100 into 0111 (bits 52 and 53 of the bytea); the variant bits stay as they are.
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
COMMENT ON FUNCTION internal.uuid7() IS
    'A version-7 UUID: 48 bits of Unix time in milliseconds, then random bits; sorts by creation time.';
REVOKE ALL ON FUNCTION internal.uuid7() FROM PUBLIC;

-- ==== Users and tokens =====================================================================

CREATE TABLE "User" (
    id             text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    email          text NOT NULL,
    name           text NOT NULL,
    role           text NOT NULL DEFAULT 'BUYER' CHECK (role IN ('BUYER', 'SELLER', 'ADMIN')),
    "passwordHash" text NOT NULL,    -- an scrypt hash (sql/internal/password_hash.sql), never the password
    "createdAt"    timestamptz NOT NULL DEFAULT now()
);
-- One account per email, whatever its case.
CREATE UNIQUE INDEX "User_email_key" ON "User" (lower(email));

CREATE TABLE "ApiToken" (
    "tokenHash"  text PRIMARY KEY,
    "userId"     text NOT NULL REFERENCES "User" (id) ON DELETE CASCADE,
    "createdAt"  timestamptz NOT NULL DEFAULT now(),
    "expiresAt"  timestamptz NOT NULL,
    "revokedAt"  timestamptz
);
CREATE INDEX "ApiToken_userId_idx" ON "ApiToken" ("userId");
COMMENT ON TABLE "ApiToken" IS 'Bearer tokens, stored only as their SHA-256; the token itself is never kept.';

-- ==== Catalogue and stock ==================================================================

-- Every UPDATE raises version by exactly 1 and stamps "updatedAt" (trigger product_bump_version,
-- sql/internal/product_triggers.sql); every change of stock appends a "StockLedger" row.
CREATE TABLE "Product" (
    id            text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    name          text NOT NULL,
    description   text NOT NULL DEFAULT '',
    price         numeric(10,2) NOT NULL CHECK (price >= 0),
    stock         integer NOT NULL CONSTRAINT "Product_stock_nonnegative" CHECK (stock >= 0),
    "sellerId"    text NOT NULL REFERENCES "User" (id),
    "createdAt"   timestamptz NOT NULL DEFAULT now(),
    "updatedAt"   timestamptz NOT NULL DEFAULT now(),
    "version"     integer NOT NULL DEFAULT 1 CONSTRAINT "Product_version_positive" CHECK ("version" >= 1),
    -- A seller may cap the units one buyer holds unpaid or buys in one order (NULL: no cap).
    "maxPerBuyer" integer CONSTRAINT "Product_maxPerBuyer_range" CHECK ("maxPerBuyer" BETWEEN 1 AND 10000)
);
CREATE INDEX "Product_sellerId_idx" ON "Product" ("sellerId");

-- Append-only (triggers ledger_append_only, ledger_no_truncate): sum(delta) per product is its
-- stock. "orderId" names the order a change belongs to, if any (no foreign key).
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

-- ==== Carts and orders =====================================================================
-- "CartItem" and "OrderItem" have no foreign key to "Product": its check takes FOR KEY SHARE on
-- the product row, which beside a checkout's UPDATE of a popular product turns the row lock into
-- a MultiXact (about 30% fewer sales per second on one product under pgbench). The trigger
-- product_guard_delete keeps what the keys guaranteed: ordered products are never deleted, cart
-- lines go with theirs.

CREATE TABLE "CartItem" (
    id           text PRIMARY KEY DEFAULT internal.uuid7()::text,
    "userId"     text NOT NULL REFERENCES "User" (id) ON DELETE CASCADE,
    "productId"  text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    "createdAt"  timestamptz NOT NULL DEFAULT now(),
    UNIQUE ("userId", "productId")
);

CREATE TABLE "Order" (
    id                 text PRIMARY KEY DEFAULT internal.uuid7()::text,
    "userId"           text NOT NULL REFERENCES "User" (id),
    status             text NOT NULL DEFAULT 'PENDING_PAYMENT' CHECK (status IN
                           ('PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'SHIPPED', 'DELIVERED')),
    total              numeric(10,2) NOT NULL,
    "shippingAddress"  jsonb NOT NULL,
    "createdAt"        timestamptz NOT NULL DEFAULT now(),
    "updatedAt"        timestamptz NOT NULL DEFAULT now(),
    "idempotencyKey"   text,         -- the checkout's Idempotency-Key, per buyer
    "requestHash"      text,         -- the hash of the cart and address it was made from
    "paymentReference" text,
    "paidAt"           timestamptz,
    "cancelledAt"      timestamptz,
    "cancelReason"     text
);
CREATE INDEX "Order_userId_idx" ON "Order" ("userId", "createdAt");
CREATE INDEX "Order_status_createdAt_idx" ON "Order" (status, "createdAt");
CREATE UNIQUE INDEX "Order_userId_idempotencyKey_key" ON "Order" ("userId", "idempotencyKey")
    WHERE "idempotencyKey" IS NOT NULL;
-- The expiry job's scan: only orders that still hold stock without being paid.
CREATE INDEX "Order_unpaid_createdAt_idx" ON "Order" ("createdAt")
    WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED');

CREATE TABLE "OrderItem" (
    id           text PRIMARY KEY DEFAULT internal.uuid7()::text,
    "orderId"    text NOT NULL REFERENCES "Order" (id) ON DELETE CASCADE,
    "productId"  text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    "unitPrice"  numeric(10,2) NOT NULL      -- the price paid, copied at checkout
);
CREATE INDEX "OrderItem_orderId_idx" ON "OrderItem" ("orderId");
CREATE INDEX "OrderItem_productId_idx" ON "OrderItem" ("productId");

-- Accepted payment-webhook signatures: a signature is accepted once, so a replay is refused.
CREATE TABLE "PaymentWebhookDelivery" (
    signature     text PRIMARY KEY,
    "orderId"     text NOT NULL,
    outcome       text NOT NULL,
    reference     text,
    "receivedAt"  timestamptz NOT NULL DEFAULT now()
);

-- ==== Settings and secrets (schema internal: the app's role cannot read them) ==============

CREATE TABLE internal.settings (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    maintenance        boolean NOT NULL DEFAULT false,
    "maintenanceSince" timestamptz,
    -- Limits against hoarding and mass sign-up (NULL: no limit), set through api.set_limits.
    max_unpaid_orders  integer DEFAULT 3 CHECK (max_unpaid_orders >= 1),
    registrations_per_client_per_hour integer DEFAULT 20 CHECK (registrations_per_client_per_hour >= 1)
);
COMMENT ON TABLE internal.settings IS 'One row of switches; maintenance blocks every api write function.';
INSERT INTO internal.settings DEFAULT VALUES;

CREATE TABLE internal.login_secret (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    pepper  bytea NOT NULL DEFAULT gen_random_bytes(32)
);
COMMENT ON TABLE internal.login_secret IS 'Server-side pepper for the fake login parameters of unknown emails.';
REVOKE ALL ON internal.login_secret FROM PUBLIC;
INSERT INTO internal.login_secret DEFAULT VALUES;

-- Payment-webhook HMAC keys: the two newest are accepted, so a key can be rotated without
-- refusing deliveries signed with the previous one.
CREATE TABLE internal.webhook_secret (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    secret      bytea NOT NULL CHECK (length(secret) >= 16),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.webhook_secret IS 'Payment-webhook HMAC keys; the two newest are active.';
REVOKE ALL ON internal.webhook_secret FROM PUBLIC;

-- ==== Login and sign-up limits =============================================================

-- One row per failed login (app.login), per email (lower-cased as typed, registered or not) and
-- client. A successful login deletes its pair's rows; api.lift_login_throttle lifts a lock.
CREATE TABLE internal.login_attempt (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL,
    client        text NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempt_email_idx ON internal.login_attempt (email, attempted_at);
CREATE INDEX login_attempt_client_idx ON internal.login_attempt (client, attempted_at);
CREATE INDEX login_attempt_attempted_at_idx ON internal.login_attempt (attempted_at);
CREATE INDEX login_attempt_pair_idx ON internal.login_attempt (email, client, attempted_at);
COMMENT ON TABLE internal.login_attempt IS
    'Login attempts not (yet) successful, per lower-cased email and client address; read by internal.login_throttle.';
REVOKE ALL ON internal.login_attempt FROM PUBLIC;

-- One row per accepted sign-up, per client (an IPv4 address or an IPv6 /64).
CREATE TABLE internal.registration (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client         text NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registration_client_idx ON internal.registration (client, registered_at);
COMMENT ON TABLE internal.registration IS 'Sign-ups per client, for the per-client hourly limit.';
REVOKE ALL ON internal.registration FROM PUBLIC;

-- ==== Operations: checkout figures, order expiry, the smoke account ========================

-- One row per UTC minute: the sum over every worker of what it saw in that minute, flushed by
-- the HTTP workers through app.record_checkout_stats, read by report, alerts and /metrics.
CREATE TABLE internal.checkout_stats (
    minute              timestamptz PRIMARY KEY,
    success             bigint NOT NULL DEFAULT 0 CHECK (success >= 0),
    insufficient_stock  bigint NOT NULL DEFAULT 0 CHECK (insufficient_stock >= 0),
    conflict            bigint NOT NULL DEFAULT 0 CHECK (conflict >= 0),
    empty_cart          bigint NOT NULL DEFAULT 0 CHECK (empty_cart >= 0),
    error               bigint NOT NULL DEFAULT 0 CHECK (error >= 0),
    retries             bigint NOT NULL DEFAULT 0 CHECK (retries >= 0),
    conflicts           bigint NOT NULL DEFAULT 0 CHECK (conflicts >= 0),
    latency_sum_s       double precision NOT NULL DEFAULT 0 CHECK (latency_sum_s >= 0),
    client_error        bigint NOT NULL DEFAULT 0 CHECK (client_error >= 0),
    maintenance         bigint NOT NULL DEFAULT 0 CHECK (maintenance >= 0)
);
COMMENT ON TABLE internal.checkout_stats IS
    'Checkouts by outcome, retries and ConcurrencyErrors (every route) per minute, summed over the HTTP workers.';
COMMENT ON COLUMN internal.checkout_stats.error IS
    'Checkouts that failed on the server: a 5xx other than 503 MAINTENANCE (before 0013_checkout_outcome_columns also client errors and maintenance).';
COMMENT ON COLUMN internal.checkout_stats.client_error IS
    'Checkouts refused as the client''s error other than an empty cart: 401, 400 invalid, 403, 404, 409 TOO_MANY_UNPAID_ORDERS or MAX_PER_BUYER_EXCEEDED, 413, 422, 429.';
COMMENT ON COLUMN internal.checkout_stats.maintenance IS
    'Checkouts answered 503 MAINTENANCE (maintenance mode on).';

-- Checkout latency histogram per minute: n checkouts took at most le seconds and more than the
-- next lower bound (not cumulative). le = 'Infinity' is the overflow bucket.
CREATE TABLE internal.checkout_latency (
    minute  timestamptz NOT NULL REFERENCES internal.checkout_stats (minute) ON DELETE CASCADE,
    le      double precision NOT NULL CHECK (le > 0),
    n       bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (minute, le)
);
COMMENT ON TABLE internal.checkout_latency IS
    'Checkout latency bucket counts per minute (non-cumulative; le = Infinity is the overflow).';
REVOKE ALL ON internal.checkout_stats, internal.checkout_latency FROM PUBLIC;

-- Orders the expiry job could not expire (say, returning their stock failed): skipped, kept here
-- and reported by verify, alerts and /metrics instead of holding back every other order.
CREATE TABLE internal.expiry_failure (
    order_id         text PRIMARY KEY,
    sqlstate         text NOT NULL,
    message          text NOT NULL,
    attempts         integer NOT NULL DEFAULT 1,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.expiry_failure IS
    'Unpaid orders api.expire_pending_orders could not expire, with the last error; retried after 10 minutes.';
REVOKE ALL ON internal.expiry_failure FROM PUBLIC;

-- One row per runner: pg_cron (the scheduled job), worker (`expire-orders --every`), manual
-- (`expire-orders` once). Written by api.record_expiry_run after each pass.
CREATE TABLE internal.expiry_run (
    runner           text PRIMARY KEY CHECK (runner IN ('pg_cron', 'worker', 'manual')),
    every            interval CHECK (every > interval '0'),
    last_success_at  timestamptz NOT NULL,
    last_expired     integer NOT NULL CHECK (last_expired >= 0),
    runs             bigint NOT NULL DEFAULT 1,
    expired_total    bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE internal.expiry_run IS
    'Each expiry runner''s cadence, last success, orders expired by it and passes (api.record_expiry_run).';
REVOKE ALL ON internal.expiry_run FROM PUBLIC;

-- At most one row: the pg_cron job that expires this database's orders, as scheduled. The job
-- itself lives in pg_cron's database (cron.job), which may be another database of the server.
CREATE TABLE internal.expiry_schedule (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    job_name       text NOT NULL,
    cron_database  text NOT NULL,
    schedule       text NOT NULL,
    command        text NOT NULL,
    every          interval NOT NULL CHECK (every > interval '0'),
    hold           interval NOT NULL CHECK (hold >= interval '0'),
    batch_size     integer NOT NULL CHECK (batch_size BETWEEN 1 AND 10000),
    scheduled_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.expiry_schedule IS
    'The pg_cron job expiring this database''s unpaid orders, as `expiry-schedule on` scheduled it (no row: none).';
REVOKE ALL ON internal.expiry_schedule FROM PUBLIC;

-- One row per smoke account, with the unlisted product it buys. The account has no usable
-- password (nobody logs in as it); the smoke command mints a short-lived token as the owner.
-- Its orders are left out of report, alerts, /metrics and the dashboard.
CREATE TABLE internal.smoke_account (
    user_id     text PRIMARY KEY REFERENCES "User" (id) ON DELETE CASCADE,
    product_id  text NOT NULL UNIQUE REFERENCES "Product" (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.smoke_account IS
    'The smoke test''s accounts and their unlisted products: their orders are left out of report, alerts, /metrics and the dashboard.';
REVOKE ALL ON internal.smoke_account FROM PUBLIC;
