-- api.payment_webhook: records one signed payment-provider delivery. The signature (already
-- verified by the app with the shared secret) is stored in "PaymentWebhookDelivery" in the same
-- transaction as api.record_payment, so a signature is accepted at most once and only together
-- with its outcome. A new delivery of an outcome already recorded answers "changed": false.
-- Raises: MKV00 malformed signature or order id; MK401 signature already accepted; and whatever
--         api.record_payment raises (MK503 maintenance, MK404 unknown order, MKS09 success for a
--         cancelled order).
-- Callers: marketplace_app (POST /api/marketplace/payments/webhook), DBAs.
CREATE OR REPLACE FUNCTION api.payment_webhook(
    p_signature text,
    p_order_id text,
    p_succeeded boolean,
    p_reference text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_signature IS NULL OR p_signature !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'signature must be 64 lowercase hex digits',
            DETAIL = jsonb_build_object('field', 'signature')::text;
    END IF;
    IF p_order_id IS NULL OR length(p_order_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'orderId must be 1 to 200 characters',
            DETAIL = jsonb_build_object('field', 'orderId')::text;
    END IF;
    INSERT INTO "PaymentWebhookDelivery" (signature, "orderId", outcome, reference)
    VALUES (p_signature, p_order_id, CASE WHEN p_succeeded THEN 'succeeded' ELSE 'failed' END,
            left(p_reference, 200))
    ON CONFLICT (signature) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK401', MESSAGE = 'this webhook signature was already accepted',
            DETAIL = jsonb_build_object('orderId', p_order_id)::text,
            HINT = 'Each delivery must be signed anew with a fresh timestamp.';
    END IF;
    RETURN api.record_payment(p_order_id, p_succeeded, p_reference);
END
$$;
COMMENT ON FUNCTION api.payment_webhook(text, text, boolean, text) IS
    'Accepts a verified payment-webhook signature once (MK401 on reuse) and records the payment outcome in the same transaction.';
REVOKE ALL ON FUNCTION api.payment_webhook(text, text, boolean, text) FROM PUBLIC;
