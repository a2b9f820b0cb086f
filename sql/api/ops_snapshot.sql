-- api.ops_snapshot: what GET /metrics reads from the database at scrape time, in one call: orders
-- by status (every status of the contract, zeros included, so the series never disappear),
-- products with negative stock, unpaid orders older than the hold window, and unpaid orders the
-- expiry job had to skip (expiryFailed). The smoke test's orders (sql/api/smoke.sql) are left out.
-- Raises: nothing. Callers: GET /metrics (pyapp/web/routes/operations.py), api.dashboard_stats, DBAs.
CREATE OR REPLACE FUNCTION api.ops_snapshot(p_hold interval DEFAULT '30 minutes')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_orders   jsonb;
    v_negative bigint;
    v_unpaid   bigint;
    v_failed   bigint;
BEGIN
    SELECT jsonb_object_agg(s.status, coalesce(o.n, 0)) INTO v_orders
    FROM (SELECT unnest(ARRAY['PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'SHIPPED', 'DELIVERED'])
          UNION SELECT DISTINCT status FROM "Order") s (status)
    LEFT JOIN (SELECT o.status, count(*) AS n FROM "Order" o
               WHERE NOT EXISTS (SELECT 1 FROM internal.smoke_account s WHERE s.user_id = o."userId")  -- smoke-test orders are not business
               GROUP BY o.status) o ON o.status = s.status;
    SELECT count(*) INTO v_negative FROM "Product" WHERE stock < 0;
    SELECT count(*) INTO v_unpaid FROM "Order" o
    WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND o."createdAt" < now() - p_hold
      AND NOT EXISTS (SELECT 1 FROM internal.smoke_account s WHERE s.user_id = o."userId");
    SELECT count(*) INTO v_failed FROM api.expiry_failures();
    RETURN jsonb_build_object('ordersByStatus', v_orders, 'negativeStock', v_negative,
                              'unpaidPastHold', v_unpaid, 'expiryFailed', v_failed,
                              'holdMinutes', extract(epoch FROM p_hold) / 60);
END
$$;
COMMENT ON FUNCTION api.ops_snapshot(interval) IS
    'Scrape-time figures for /metrics: orders by status, products with negative stock, unpaid orders past the hold window, orders expiry had to skip.';
REVOKE ALL ON FUNCTION api.ops_snapshot(interval) FROM PUBLIC;
