-- api.evaluate_alerts: the operational alert rules evaluated on live data, one row per rule
-- (rule, severity, value, threshold, firing, detail); a rule fires when value > threshold:
--   negative_stock (critical): products with stock < 0;
--   concurrency_errors (warning): ConcurrencyErrors persisted by the HTTP workers in the window;
--   failed_or_cancelled_orders (warning): orders that became PAYMENT_FAILED or CANCELLED in the window;
--   unpaid_past_hold (warning): unpaid orders older than the hold window (the expiry job is not running);
--   expiry_failures (warning, threshold 0): unpaid orders the expiry job had to skip (api.expiry_failures).
-- The order rules leave out the smoke test's orders (sql/api/smoke.sql).
-- monitoring/alerts.yml holds the same rules for Prometheus.
-- Raises: MKV00 for a NULL or negative threshold or hold, or a window that is NULL or not
-- positive. Callers: `python -m pyapp alerts`, DBAs.
CREATE OR REPLACE FUNCTION api.evaluate_alerts(
    p_hold interval DEFAULT '30 minutes',
    p_window interval DEFAULT '1 hour',
    p_max_negative_stock bigint DEFAULT 0,
    p_max_concurrency_errors bigint DEFAULT 100,
    p_max_failed_orders bigint DEFAULT 50,
    p_max_unpaid_past_hold bigint DEFAULT 0)
RETURNS TABLE (rule text, severity text, value bigint, threshold bigint, firing boolean, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    -- Each argument on its own: least() would skip a NULL threshold, whose rule then never fires.
    IF p_hold IS NULL OR p_window IS NULL OR p_hold < interval '0' OR p_window <= interval '0'
       OR p_max_negative_stock IS NULL OR p_max_concurrency_errors IS NULL
       OR p_max_failed_orders IS NULL OR p_max_unpaid_past_hold IS NULL
       OR least(p_max_negative_stock, p_max_concurrency_errors, p_max_failed_orders,
                p_max_unpaid_past_hold) < 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00',
            MESSAGE = 'thresholds and the hold must be non-negative, the window positive, none of them NULL',
            DETAIL = jsonb_build_object('field', 'threshold')::text;
    END IF;

    SELECT count(*) INTO v_n FROM "Product" p WHERE p.stock < 0;
    RETURN QUERY SELECT 'negative_stock', 'critical', v_n, p_max_negative_stock, v_n > p_max_negative_stock,
        format('%s products with stock below 0', v_n);

    -- A minute row counts when any part of it lies in the window.
    SELECT coalesce(sum(s.conflicts), 0) INTO v_n FROM internal.checkout_stats s
    WHERE s.minute > now() - p_window - interval '1 minute' AND s.minute <= now();
    RETURN QUERY SELECT 'concurrency_errors', 'warning', v_n, p_max_concurrency_errors, v_n > p_max_concurrency_errors,
        format('%s ConcurrencyErrors in the last %s', v_n, p_window);

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.status IN ('PAYMENT_FAILED', 'CANCELLED') AND o."updatedAt" > now() - p_window
      AND NOT EXISTS (SELECT 1 FROM internal.smoke_account s WHERE s.user_id = o."userId");  -- smoke-test orders are not business
    RETURN QUERY SELECT 'failed_or_cancelled_orders', 'warning', v_n, p_max_failed_orders, v_n > p_max_failed_orders,
        format('%s orders became PAYMENT_FAILED or CANCELLED in the last %s', v_n, p_window);

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND o."createdAt" < now() - p_hold
      AND NOT EXISTS (SELECT 1 FROM internal.smoke_account s WHERE s.user_id = o."userId");  -- smoke-test orders are not business
    RETURN QUERY SELECT 'unpaid_past_hold', 'warning', v_n, p_max_unpaid_past_hold, v_n > p_max_unpaid_past_hold,
        format('%s unpaid orders older than %s: is expire-orders running?', v_n, p_hold);

    -- No threshold argument: a single order the job cannot expire needs a person.
    SELECT count(*) INTO v_n FROM api.expiry_failures();
    RETURN QUERY SELECT 'expiry_failures', 'warning', v_n, 0::bigint, v_n > 0,
        format('%s unpaid orders could not be expired: see api.expiry_failures()', v_n);
END
$$;
COMMENT ON FUNCTION api.evaluate_alerts(interval, interval, bigint, bigint, bigint, bigint) IS
    'Operational alert rules on live data (negative stock, ConcurrencyErrors, failed or cancelled orders, unpaid past the hold, expiry failures), one row each.';
REVOKE ALL ON FUNCTION api.evaluate_alerts(interval, interval, bigint, bigint, bigint, bigint) FROM PUBLIC;
