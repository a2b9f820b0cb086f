-- api.dashboard_stats: the database half of the operator dashboard (GET /admin/dashboard/data), in
-- one read-only statement: orders by status (all time, every known status present, zero when
-- none) and in the last hour, products with negative stock (count and up to 20 ids: always 0 unless
-- the CHECK was dropped), and unpaid orders past the hold window (the expiry job's backlog).
-- Raises: MKV00 when p_hold is missing or not positive.
-- Callers: marketplace_app (after api.authenticate(..., 'ADMIN')), DBAs.
CREATE OR REPLACE FUNCTION api.dashboard_stats(p_hold interval DEFAULT '30 minutes')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_statuses  text[] := ARRAY['PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'SHIPPED', 'DELIVERED'];
    v_all       jsonb;
    v_hour      jsonb;
    v_neg_n     bigint;
    v_neg_ids   jsonb;
    v_unpaid    bigint;
    v_products  bigint;
BEGIN
    IF p_hold IS NULL OR p_hold <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the hold window must be a positive interval',
            DETAIL = jsonb_build_object('field', 'hold')::text;
    END IF;
    -- Known statuses first so the page always has the same rows; unknown ones still show up.
    SELECT jsonb_object_agg(s.status, coalesce(c.n, 0) ORDER BY s.ord) INTO v_all
    FROM (SELECT u.status, u.ord FROM unnest(v_statuses) WITH ORDINALITY u(status, ord)
          UNION ALL
          SELECT DISTINCT o.status, 100 FROM "Order" o WHERE o.status <> ALL (v_statuses)) s
    LEFT JOIN (SELECT o.status, count(*) AS n FROM "Order" o GROUP BY o.status) c ON c.status = s.status;

    SELECT coalesce(jsonb_object_agg(o.status, o.n), '{}') INTO v_hour
    FROM (SELECT status, count(*) AS n FROM "Order" WHERE "createdAt" > now() - interval '1 hour'
          GROUP BY status) o;

    SELECT count(*), coalesce(jsonb_agg(p.id ORDER BY p.id) FILTER (WHERE p.rn <= 20), '[]')
    INTO v_neg_n, v_neg_ids
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM "Product" WHERE stock < 0) p;

    SELECT count(*) INTO v_unpaid FROM "Order"
    WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND "createdAt" < now() - p_hold;

    SELECT count(*) INTO v_products FROM "Product";

    RETURN jsonb_build_object(
        'ordersByStatus', v_all,
        'ordersLastHour', v_hour,
        'negativeStock', v_neg_n,
        'negativeStockProducts', v_neg_ids,
        'unpaidPastHold', v_unpaid,
        'holdMinutes', extract(epoch FROM p_hold)::numeric / 60,
        'products', v_products,
        'at', now());
END
$$;
COMMENT ON FUNCTION api.dashboard_stats(interval) IS
    'Operator dashboard figures: orders by status (all time, last hour), negative stock, unpaid orders past the hold window.';
REVOKE ALL ON FUNCTION api.dashboard_stats(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.dashboard_stats(interval) TO marketplace_app;
