-- api.limits: the limits against hoarding and mass sign-up, from internal.settings:
-- {"maxUnpaidOrders", "registrationsPerClientPerHour"} (null: no limit).
-- Raises: nothing. Callers: `python -m pyapp limits`, DBAs.
CREATE OR REPLACE FUNCTION api.limits()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT jsonb_build_object('maxUnpaidOrders', s.max_unpaid_orders,
                              'registrationsPerClientPerHour', s.registrations_per_client_per_hour)
    FROM internal.settings s
$$;
COMMENT ON FUNCTION api.limits() IS 'Unpaid orders per buyer and sign-ups per client per hour (null: no limit).';
REVOKE ALL ON FUNCTION api.limits() FROM PUBLIC;

-- api.set_limits: changes the limits named in p_limits (same keys as api.limits; JSON null lifts
-- a limit; an absent key is left as it is) and returns them all. The app's role cannot call it:
-- the environment's MAX_UNPAID_ORDERS and REGISTRATIONS_PER_CLIENT_PER_HOUR reach the database
-- through `python -m pyapp serve` or `limits`, as the owner.
-- Raises: MKV00 unknown key, or a value that is neither null nor an integer 1..1000000.
-- Callers: `python -m pyapp serve`, `python -m pyapp limits`, tests, DBAs.
CREATE OR REPLACE FUNCTION api.set_limits(p_limits jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_key text;
BEGIN
    IF p_limits IS NULL OR jsonb_typeof(p_limits) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'limits must be a JSON object',
            DETAIL = jsonb_build_object('field', 'limits')::text;
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_limits) LOOP
        IF v_key NOT IN ('maxUnpaidOrders', 'registrationsPerClientPerHour') THEN
            RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'unknown limit: ' || v_key,
                DETAIL = jsonb_build_object('field', v_key)::text,
                HINT = 'Known: maxUnpaidOrders, registrationsPerClientPerHour.';
        END IF;
        IF jsonb_typeof(p_limits -> v_key) <> 'null' AND NOT (
               jsonb_typeof(p_limits -> v_key) = 'number'
               AND (p_limits ->> v_key) ~ '^[0-9]{1,7}$'
               AND (p_limits ->> v_key)::integer BETWEEN 1 AND 1000000) THEN
            RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = v_key || ' must be null or an integer from 1 to 1000000',
                DETAIL = jsonb_build_object('field', v_key)::text;
        END IF;
    END LOOP;
    UPDATE internal.settings s SET
        max_unpaid_orders = CASE WHEN p_limits ? 'maxUnpaidOrders'
                                 THEN (p_limits ->> 'maxUnpaidOrders')::integer ELSE s.max_unpaid_orders END,
        registrations_per_client_per_hour = CASE WHEN p_limits ? 'registrationsPerClientPerHour'
                                 THEN (p_limits ->> 'registrationsPerClientPerHour')::integer
                                 ELSE s.registrations_per_client_per_hour END;
    RETURN api.limits();
END
$$;
COMMENT ON FUNCTION api.set_limits(jsonb) IS
    'Sets maxUnpaidOrders and/or registrationsPerClientPerHour (null: no limit); returns the limits.';
REVOKE ALL ON FUNCTION api.set_limits(jsonb) FROM PUBLIC;
