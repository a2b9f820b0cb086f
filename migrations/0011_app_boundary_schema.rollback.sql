SET LOCAL lock_timeout = '5s';
DROP TABLE internal.expiry_failure;
DROP TABLE internal.webhook_secret;
DROP TABLE internal.login_secret;
DROP INDEX internal.login_attempt_pair_idx;
DROP TABLE internal.registration;
ALTER TABLE internal.settings DROP COLUMN max_unpaid_orders, DROP COLUMN registrations_per_client_per_hour;
ALTER TABLE "Product" DROP COLUMN "maxPerBuyer";
GRANT USAGE ON SCHEMA api TO marketplace_app;
DO $$
DECLARE
    f regprocedure;
BEGIN
    -- What 0004-0010 granted the app: every api function but the DBA-only ones.
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'api'::regnamespace
               AND p.proname NOT IN ('create_user', 'login_credentials')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO marketplace_app', f);
    END LOOP;
END
$$;
DROP SCHEMA app;
GRANT CREATE ON SCHEMA public TO PUBLIC;
-- pgcrypto stays: other objects of the database may use it.
