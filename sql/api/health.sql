-- api.health: the cheap state /health reports: whether every expected migration is applied, and
-- whether maintenance mode is on. Unlike api.integrity_report it reads no business table.
-- Raises: nothing. Callers: app.health (GET /health), monitoring.
CREATE OR REPLACE FUNCTION api.health()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_missing text[];
    v_maint   boolean;
BEGIN
    SELECT s.maintenance INTO v_maint FROM internal.settings s;
    IF to_regclass('public._yoyo_migration') IS NULL THEN
        v_missing := internal.expected_migrations();
    ELSE
        EXECUTE 'SELECT array_agg(e ORDER BY e) FROM unnest($1) e
                 WHERE e NOT IN (SELECT migration_id FROM public._yoyo_migration)'
        INTO v_missing USING internal.expected_migrations();
    END IF;
    RETURN jsonb_build_object(
        'database', 'ok',
        'migrations', CASE WHEN v_missing IS NULL THEN 'ok' ELSE 'pending' END,
        'migrationsMissing', coalesce(to_jsonb(v_missing), '[]'::jsonb),
        'maintenance', coalesce(v_maint, false));
END
$$;
COMMENT ON FUNCTION api.health() IS
    'Cheap health state for GET /health: migrations applied (ok or pending) and maintenance on or off.';
REVOKE ALL ON FUNCTION api.health() FROM PUBLIC;
