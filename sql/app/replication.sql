-- Schema app (see sql/app/auth.sql): the replication state the app shows (docs/scaling.md).

-- app.replication_state: the node and its standbys (api.replication_state).
-- Raises: nothing. Callers: marketplace_app (GET /health, GET /admin/dashboard/data).
CREATE OR REPLACE FUNCTION app.replication_state()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.replication_state()
$$;
COMMENT ON FUNCTION app.replication_state() IS 'The node this session is on and its replication state, for /health.';
REVOKE ALL ON FUNCTION app.replication_state() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.replication_state() TO marketplace_app;
