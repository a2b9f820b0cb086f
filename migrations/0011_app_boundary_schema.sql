-- The HTTP app's role becomes a real boundary, and hostile users lose their levers: schema app
-- (the token-bound functions marketplace_app may call, defined in sql/app/ and migration 0012)
-- replaces every api grant; pgcrypto for tokens and webhook HMACs made in the database; secrets
-- the app cannot read; per-buyer and per-client limits; a record of orders expiry could not
-- return; no CREATE on schema public for PUBLIC.
-- depends: 0010_checkout_early_release

SET LOCAL lock_timeout = '5s';

-- Tokens (gen_random_bytes) and webhook signatures (hmac) are made and checked in the database.
-- pgcrypto is a trusted extension: the database owner may create it without superuser.
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;

-- Any role could create objects in public and so plant a function or operator that a careless
-- search_path resolves (CVE-2018-1058); only the owner creates there now.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA app;
COMMENT ON SCHEMA app IS
    'What the HTTP app may call: one function per route, each identifying its caller only by the SHA-256 of a bearer token it was given (or needing no identity).';
REVOKE ALL ON SCHEMA app FROM PUBLIC;
GRANT USAGE ON SCHEMA app TO marketplace_app;

-- The api functions take user, actor and seller ids: they stay for DBAs and the owner, and the app
-- loses them all (sql/ no longer grants them).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA api FROM marketplace_app;
REVOKE USAGE ON SCHEMA api FROM marketplace_app;

-- A seller may cap the units one buyer holds unpaid or buys in one order (NULL: no cap).
ALTER TABLE "Product" ADD COLUMN "maxPerBuyer" integer
    CONSTRAINT "Product_maxPerBuyer_range" CHECK ("maxPerBuyer" BETWEEN 1 AND 10000);

-- Limits against hoarding and mass sign-up, read by the app schema (NULL: no limit). The
-- environment's MAX_UNPAID_ORDERS and REGISTRATIONS_PER_CLIENT_PER_HOUR set them through
-- api.set_limits (`python -m pyapp serve` and `limits`): the app role cannot change them.
ALTER TABLE internal.settings
    ADD COLUMN max_unpaid_orders integer DEFAULT 3 CHECK (max_unpaid_orders >= 1),
    ADD COLUMN registrations_per_client_per_hour integer DEFAULT 20
        CHECK (registrations_per_client_per_hour >= 1);

-- One row per accepted sign-up, per client (an IPv4 address or an IPv6 /64).
CREATE TABLE internal.registration (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client        text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registration_client_idx ON internal.registration (client, registered_at);
COMMENT ON TABLE internal.registration IS 'Sign-ups per client, for the per-client hourly limit.';
REVOKE ALL ON internal.registration FROM PUBLIC;

-- Login failures are now counted per (email, client) pair.
CREATE INDEX login_attempt_pair_idx ON internal.login_attempt (email, client, attempted_at);

-- Secrets the app role cannot read. The pepper makes the stable fake salt of an unknown email.
CREATE TABLE internal.login_secret (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    pepper bytea NOT NULL DEFAULT public.gen_random_bytes(32)
);
INSERT INTO internal.login_secret DEFAULT VALUES;
COMMENT ON TABLE internal.login_secret IS 'Server-side pepper for the fake login parameters of unknown emails.';
REVOKE ALL ON internal.login_secret FROM PUBLIC;

-- Payment-webhook HMAC keys: the two newest are accepted, so a key can be rotated without
-- refusing deliveries signed with the previous one.
CREATE TABLE internal.webhook_secret (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    secret     bytea NOT NULL CHECK (length(secret) >= 16),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.webhook_secret IS 'Payment-webhook HMAC keys; the two newest are active.';
REVOKE ALL ON internal.webhook_secret FROM PUBLIC;

-- Orders the expiry job could not expire (say, returning their stock failed): skipped, kept here
-- and reported by verify, alerts and /metrics instead of holding back every other order.
CREATE TABLE internal.expiry_failure (
    order_id        text PRIMARY KEY,
    sqlstate        text NOT NULL,
    message         text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.expiry_failure IS
    'Unpaid orders api.expire_pending_orders could not expire, with the last error; retried after 10 minutes.';
REVOKE ALL ON internal.expiry_failure FROM PUBLIC;
