-- api.set_maintenance: turns maintenance mode on or off. While on, every api write function raises
-- MK503; reads keep working. Returns the new state.
-- Raises: MKV00 when p_enabled is NULL. Callers: app.set_maintenance (for an ADMIN's token), `python -m pyapp maintenance`, DBAs.
CREATE OR REPLACE FUNCTION api.set_maintenance(p_enabled boolean)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_row internal.settings;
BEGIN
    IF p_enabled IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'enabled must be true or false',
            DETAIL = jsonb_build_object('field', 'enabled')::text;
    END IF;
    UPDATE internal.settings s
    SET maintenance = p_enabled,
        "maintenanceSince" = CASE WHEN p_enabled THEN coalesce(s."maintenanceSince", now()) END
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('maintenance', v_row.maintenance, 'since', v_row."maintenanceSince");
END
$$;
COMMENT ON FUNCTION api.set_maintenance(boolean) IS
    'Turns maintenance mode on or off; while on, every api write function raises MK503.';
REVOKE ALL ON FUNCTION api.set_maintenance(boolean) FROM PUBLIC;

-- api.maintenance_status: whether maintenance mode is on, and since when.
-- Raises: nothing. Callers: DBAs (api.health reads the switch itself).
CREATE OR REPLACE FUNCTION api.maintenance_status()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT jsonb_build_object('maintenance', s.maintenance, 'since', s."maintenanceSince")
    FROM internal.settings s
$$;
COMMENT ON FUNCTION api.maintenance_status() IS 'Whether maintenance mode is on, and since when.';
REVOKE ALL ON FUNCTION api.maintenance_status() FROM PUBLIC;
