-- Schema app (see sql/app/auth.sql): the payment provider's webhook.

-- app.payment_webhook: one delivery, verified here, not by the app: X-Signature-Timestamp
-- (p_timestamp, Unix seconds) must be within 5 minutes of now, and X-Signature (p_signature) the
-- hex HMAC-SHA256 of "<timestamp>.<raw body>" under one of the two newest keys of
-- internal.webhook_secret (digests are compared as SHA-256 of the hex, so the comparison's timing
-- tells nothing). The body is {"orderId", "status": "succeeded" | "failed", "reference"}. A
-- signature is accepted once ("PaymentWebhookDelivery", in the same transaction as the payment);
-- a new delivery of an outcome already recorded answers "changed": false.
-- Raises: MKW01 missing, malformed, wrong, stale or reused signature; MKN03 no key configured;
--         MKV00 a body that is not such an object; what api.record_payment raises (MK503, MK404,
--         MKS09 success for a cancelled order).
-- Callers: marketplace_app (POST /api/marketplace/payments/webhook).
CREATE OR REPLACE FUNCTION app.payment_webhook(p_timestamp text, p_signature text, p_body bytea)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_sig    text := lower(btrim(p_signature));
    v_ts     text := btrim(p_timestamp);
    v_doc    jsonb;
    v_status text;
BEGIN
    IF v_ts IS NULL OR v_ts !~ '^[0-9]{1,12}$' OR v_sig IS NULL OR v_sig !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKW01', MESSAGE = 'X-Signature-Timestamp (unix seconds) and X-Signature (hex HMAC-SHA256) are required',
            DETAIL = '{}';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM internal.webhook_secret) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKN03', MESSAGE = 'payment webhooks are not configured on this server',
            DETAIL = jsonb_build_object('retryAfter', 60)::text,
            HINT = 'Set a key: python -m pyapp webhook-secret set (or PAYMENT_WEBHOOK_SECRET for serve).';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM (SELECT w.secret FROM internal.webhook_secret w ORDER BY w.id DESC LIMIT 2) k
        WHERE sha256(convert_to(encode(hmac(convert_to(v_ts || '.', 'UTF8') || coalesce(p_body, ''::bytea),
                                            k.secret, 'sha256'), 'hex'), 'UTF8'))
              = sha256(convert_to(v_sig, 'UTF8'))) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKW01', MESSAGE = 'the signature does not match the body', DETAIL = '{}';
    END IF;
    IF abs(extract(epoch FROM now()) - v_ts::bigint) > 300 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKW01',
            MESSAGE = 'the signature timestamp is more than 5 minutes away from now', DETAIL = '{}';
    END IF;

    BEGIN
        v_doc := convert_from(p_body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        v_doc := NULL;
    END;
    IF jsonb_typeof(v_doc) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the body must be a JSON object',
            DETAIL = jsonb_build_object('field', 'body')::text;
    END IF;
    v_doc := v_doc - CASE WHEN jsonb_typeof(v_doc -> 'reference') = 'null' THEN 'reference' ELSE '' END;
    v_status := v_doc ->> 'status';
    IF jsonb_typeof(v_doc -> 'status') IS DISTINCT FROM 'string' OR v_status NOT IN ('succeeded', 'failed') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'status must be succeeded or failed',
            DETAIL = jsonb_build_object('field', 'status')::text;
    END IF;
    PERFORM internal.json_text(v_doc, 'orderId', 1, 200), internal.json_text(v_doc, 'reference', 0, 200);
    IF NOT v_doc ? 'orderId' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'orderId is required',
            DETAIL = jsonb_build_object('field', 'orderId')::text;
    END IF;

    INSERT INTO "PaymentWebhookDelivery" (signature, "orderId", outcome, reference)
    VALUES (v_sig, v_doc ->> 'orderId', v_status, v_doc ->> 'reference')
    ON CONFLICT (signature) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MKW01', MESSAGE = 'this webhook signature was already accepted',
            DETAIL = jsonb_build_object('orderId', v_doc ->> 'orderId')::text,
            HINT = 'Each delivery must be signed anew with a fresh timestamp.';
    END IF;
    RETURN api.record_payment(v_doc ->> 'orderId', v_status = 'succeeded', v_doc ->> 'reference');
END
$$;
COMMENT ON FUNCTION app.payment_webhook(text, text, bytea) IS
    'Verifies a payment-webhook delivery (HMAC under an active key, 5-minute window, no replay) and records its outcome.';
REVOKE ALL ON FUNCTION app.payment_webhook(text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.payment_webhook(text, text, bytea) TO marketplace_app;
