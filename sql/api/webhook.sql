-- Payment-webhook keys. The HMAC of every delivery is checked in the database (app.payment_webhook)
-- against keys the app's role cannot read. The two newest keys are active, so a key is rotated by
-- adding the new one, moving the payment provider to it, then retiring the old one: no delivery
-- is refused in between.

-- api.set_webhook_secret: adds a key as the newest (nothing changes when it already is the newest),
-- keeping the one before it active and dropping any older one. Returns {"added", "active"}.
-- Raises: MKV00 a key shorter than 16 bytes. Callers: `python -m pyapp webhook-secret set`, `serve`
--         (from PAYMENT_WEBHOOK_SECRET), DBAs.
CREATE OR REPLACE FUNCTION api.set_webhook_secret(p_secret text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_key   bytea := convert_to(p_secret, 'UTF8');
    v_added boolean := false;
BEGIN
    IF p_secret IS NULL OR octet_length(v_key) < 16 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'a webhook secret must be at least 16 bytes',
            DETAIL = jsonb_build_object('field', 'secret')::text;
    END IF;
    LOCK TABLE internal.webhook_secret IN SHARE ROW EXCLUSIVE MODE;
    IF v_key IS DISTINCT FROM (SELECT w.secret FROM internal.webhook_secret w ORDER BY w.id DESC LIMIT 1) THEN
        INSERT INTO internal.webhook_secret (secret) VALUES (v_key);
        DELETE FROM internal.webhook_secret w
        WHERE w.id NOT IN (SELECT k.id FROM internal.webhook_secret k ORDER BY k.id DESC LIMIT 2);
        v_added := true;
    END IF;
    RETURN jsonb_build_object('added', v_added, 'active', (SELECT count(*) FROM internal.webhook_secret));
END
$$;
COMMENT ON FUNCTION api.set_webhook_secret(text) IS
    'Adds a payment-webhook key as the newest; the previous one stays active until retired.';
REVOKE ALL ON FUNCTION api.set_webhook_secret(text) FROM PUBLIC;

-- api.retire_webhook_secrets: keeps only the newest key (once the provider signs with it).
-- Returns {"retired", "active"}.
-- Raises: nothing. Callers: `python -m pyapp webhook-secret retire`, DBAs.
CREATE OR REPLACE FUNCTION api.retire_webhook_secrets()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_retired integer;
BEGIN
    DELETE FROM internal.webhook_secret w
    WHERE w.id <> (SELECT max(k.id) FROM internal.webhook_secret k);
    GET DIAGNOSTICS v_retired = ROW_COUNT;
    RETURN jsonb_build_object('retired', v_retired, 'active', (SELECT count(*) FROM internal.webhook_secret));
END
$$;
COMMENT ON FUNCTION api.retire_webhook_secrets() IS 'Keeps only the newest payment-webhook key.';
REVOKE ALL ON FUNCTION api.retire_webhook_secrets() FROM PUBLIC;

-- api.webhook_secrets: the keys on record, newest first, without the keys themselves.
-- Raises: nothing. Callers: `python -m pyapp webhook-secret status`, DBAs.
CREATE OR REPLACE FUNCTION api.webhook_secrets()
RETURNS TABLE (id bigint, created_at timestamptz, active boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT w.id, w.created_at, row_number() OVER (ORDER BY w.id DESC) <= 2
    FROM internal.webhook_secret w ORDER BY w.id DESC
$$;
COMMENT ON FUNCTION api.webhook_secrets() IS 'Payment-webhook keys on record (id, created, active), never the key.';
REVOKE ALL ON FUNCTION api.webhook_secrets() FROM PUBLIC;
