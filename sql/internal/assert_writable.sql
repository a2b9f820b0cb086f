-- internal.assert_writable: the maintenance gate every api write function passes first.
-- No SET clause (it runs on every write; it names its table in full): a function with one pays
-- for saving and restoring the setting on every call.
-- Raises: MK503 while maintenance mode is on. Callers: api functions only.
CREATE OR REPLACE FUNCTION internal.assert_writable()
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_since timestamptz;
BEGIN
    SELECT s."maintenanceSince" INTO v_since FROM internal.settings s WHERE s.maintenance;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'MK503',
            MESSAGE = 'the marketplace is in maintenance mode: writes are paused',
            DETAIL = jsonb_build_object('maintenance', true, 'since', v_since, 'retryAfter', 30)::text,
            HINT = 'Retry later; reads keep working. A DBA ends it with SELECT api.set_maintenance(false).';
    END IF;
END
$$;
COMMENT ON FUNCTION internal.assert_writable() IS 'Raises MK503 while maintenance mode is on.';
REVOKE ALL ON FUNCTION internal.assert_writable() FROM PUBLIC;
