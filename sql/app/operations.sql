-- Schema app (see sql/app/auth.sql): what serving needs without a user (the error registry,
-- health, the metrics snapshot, the workers' own checkout figures) and the admin's switches.

-- app.error_policy: the SQLSTATE registry with its HTTP policy (api.error_policy), loaded by each
-- worker on its first request.
-- Raises: nothing. Callers: marketplace_app (pyapp.db.pool).
CREATE OR REPLACE FUNCTION app.error_policy()
RETURNS TABLE (sqlstate text, code text, http_status integer, title text, retryable text,
               retry_after integer, description text)
LANGUAGE sql IMMUTABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT * FROM api.error_policy()
$$;
COMMENT ON FUNCTION app.error_policy() IS 'The SQLSTATE registry with HTTP status, title, retry policy and Retry-After.';
REVOKE ALL ON FUNCTION app.error_policy() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.error_policy() TO marketplace_app;

-- app.error_codes: the project's SQLSTATEs (api.error_codes), as app servers before the policy
-- loaded them; kept while such servers may still run.
-- Raises: nothing. Callers: marketplace_app (older app servers).
CREATE OR REPLACE FUNCTION app.error_codes()
RETURNS TABLE (sqlstate text, code text, http_status integer, title text)
LANGUAGE sql IMMUTABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT * FROM api.error_codes()
$$;
COMMENT ON FUNCTION app.error_codes() IS 'The registry of the project''s SQLSTATEs with HTTP status and title.';
REVOKE ALL ON FUNCTION app.error_codes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.error_codes() TO marketplace_app;

-- app.health: migrations and maintenance state (api.health).
-- Raises: nothing. Callers: marketplace_app (GET /health).
CREATE OR REPLACE FUNCTION app.health()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.health()
$$;
COMMENT ON FUNCTION app.health() IS 'Migrations and maintenance state, cheap enough for /health.';
REVOKE ALL ON FUNCTION app.health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.health() TO marketplace_app;

-- app.ops_snapshot: the database's figures for /metrics (api.ops_snapshot); the app caches it.
-- Raises: MKV00 bad hold window. Callers: marketplace_app (GET /metrics).
CREATE OR REPLACE FUNCTION app.ops_snapshot(p_hold interval DEFAULT '30 minutes')
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.ops_snapshot(p_hold)
$$;
COMMENT ON FUNCTION app.ops_snapshot(interval) IS 'Orders by status, negative stock and unpaid orders past the hold, for /metrics.';
REVOKE ALL ON FUNCTION app.ops_snapshot(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.ops_snapshot(interval) TO marketplace_app;

-- app.record_checkout_stats: a worker's per-minute checkout figures (api.record_checkout_stats).
-- Raises: MKV00 malformed figures. Callers: marketplace_app (every worker, every ~10 s).
CREATE OR REPLACE FUNCTION app.record_checkout_stats(p_stats jsonb)
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.record_checkout_stats(p_stats)
$$;
COMMENT ON FUNCTION app.record_checkout_stats(jsonb) IS 'Adds a worker''s per-minute checkout figures.';
REVOKE ALL ON FUNCTION app.record_checkout_stats(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.record_checkout_stats(jsonb) TO marketplace_app;

-- app.set_maintenance: an ADMIN's token turns maintenance mode on or off.
-- Raises: MK401; MK403 not an admin; MKV00. Callers: marketplace_app (POST /admin/maintenance/...).
CREATE OR REPLACE FUNCTION app.set_maintenance(p_token_hash text, p_enabled boolean)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM api.authenticate(p_token_hash, 'ADMIN');
    RETURN api.set_maintenance(p_enabled);
END
$$;
COMMENT ON FUNCTION app.set_maintenance(text, boolean) IS 'Maintenance mode on or off, for an ADMIN''s token only.';
REVOKE ALL ON FUNCTION app.set_maintenance(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.set_maintenance(text, boolean) TO marketplace_app;

-- app.dashboard_stats: the operator page's database figures, for an ADMIN's token.
-- Raises: MK401; MK403 not an admin. Callers: marketplace_app (GET /admin/dashboard/data).
CREATE OR REPLACE FUNCTION app.dashboard_stats(p_token_hash text, p_hold interval DEFAULT '30 minutes')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM api.authenticate(p_token_hash, 'ADMIN');
    RETURN api.dashboard_stats(p_hold);
END
$$;
COMMENT ON FUNCTION app.dashboard_stats(text, interval) IS 'The operator page''s database figures, for an ADMIN''s token only.';
REVOKE ALL ON FUNCTION app.dashboard_stats(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.dashboard_stats(text, interval) TO marketplace_app;
