-- api.dashboard_stats: the database half of the operator dashboard (GET /admin/dashboard/data), in
-- one read-only statement: orders by status (all time, every known status present, zero when
-- none) and in the last hour, products with negative stock (count and up to 20 ids: always 0 unless
-- the CHECK was dropped), unpaid orders past the hold window (the expiry job's backlog), and the
-- deployment checklist's verdict over the last hour (api.deploy_verdict('1 hour'): the same
-- figures, targets and statuses as `python -m pyapp report --since 1h --check`). The smoke
-- test's orders (sql/api/smoke.sql) are left out.
-- Raises: MKV00 when p_hold is missing or not positive.
-- Callers: app.dashboard_stats (for an ADMIN's token), DBAs.
CREATE OR REPLACE FUNCTION api.dashboard_stats(p_hold interval DEFAULT '30 minutes')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_hour      jsonb;
    v_neg_ids   jsonb;
    v_products  bigint;
BEGIN
    IF p_hold IS NULL OR p_hold <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the hold window must be a positive interval',
            DETAIL = jsonb_build_object('field', 'hold')::text;
    END IF;
    SELECT coalesce(jsonb_object_agg(o.status, o.n), '{}') INTO v_hour
    FROM (SELECT o.status, count(*) AS n FROM "Order" o
          WHERE o."createdAt" > now() - interval '1 hour'
            AND NOT EXISTS (SELECT 1 FROM internal.smoke_account s WHERE s.user_id = o."userId")  -- smoke-test orders are not business
          GROUP BY o.status) o;
    SELECT coalesce(jsonb_agg(p.id ORDER BY p.id), '[]') INTO v_neg_ids
    FROM (SELECT id FROM "Product" WHERE stock < 0 ORDER BY id LIMIT 20) p;
    SELECT count(*) INTO v_products FROM "Product";

    -- Orders by status, negative stock and the unpaid backlog are what /metrics reads too.
    RETURN api.ops_snapshot(p_hold) || jsonb_build_object(
        'ordersLastHour', v_hour,
        'negativeStockProducts', v_neg_ids,
        'products', v_products,
        'verdict', api.deploy_verdict('1 hour'),
        'at', now());
END
$$;
COMMENT ON FUNCTION api.dashboard_stats(interval) IS
    'Operator dashboard figures: orders by status (all time, last hour), negative stock, unpaid orders past the hold window, the last hour''s deploy verdict.';
REVOKE ALL ON FUNCTION api.dashboard_stats(interval) FROM PUBLIC;
