-- api.checkout_report: the deployment checklist's day-one report over the last p_since, from the
-- persisted per-minute figures (internal.checkout_stats, which survive server restarts) and the
-- live tables: checkouts by outcome, success rate, ConcurrencyErrors and their rate, retries per
-- checkout, latency P50/P95/P99 (interpolated inside the persisted buckets), negative stock now,
-- and the orders created in the window by status (the smoke test's orders left out). Minutes are
-- whole: the window starts at the minute that contains now() - p_since, and ends at now() (a
-- minute a worker with a fast clock recorded ahead of time is counted once it has begun).
-- The rates are over the checkouts that reached the server's decision (decidedCheckouts: an
-- order, a correct INSUFFICIENT_STOCK, or a failure of the server), so that neither a wave of
-- client errors (expired tokens, empty carts, bad bodies, 422, 429, the unpaid-order and per-buyer
-- limits) nor maintenance 503s moves them either way. successRate = 1 - failedCheckouts
-- (conflict: 409 CONCURRENCY_CONFLICT after the server's retries, error: a 5xx other than 503
-- MAINTENANCE) / decidedCheckouts; concurrencyErrorRate = concurrencyErrors (every 409-class
-- conflict the server saw, on every route, retried attempts included) / decidedCheckouts. The
-- latency figures are those of the decided checkouts too (the HTTP workers record no latency for
-- the others, pyapp/metrics.py). api.deploy_verdict judges these figures against the checklist's
-- targets.
-- Raises: MKV00 when p_since is not a positive interval. Callers: `python -m pyapp report`,
-- api.deploy_verdict, DBAs.
CREATE OR REPLACE FUNCTION api.checkout_report(p_since interval DEFAULT '24 hours')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_from     timestamptz;
    v_s        record;
    v_total    bigint;
    v_decided  bigint;
    v_failed   bigint;
    v_le       double precision[];
    v_n        bigint[];
    v_negative bigint;
    v_orders   jsonb;
BEGIN
    IF p_since IS NULL OR p_since <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'since must be a positive interval',
            DETAIL = jsonb_build_object('field', 'since')::text;
    END IF;
    v_from := date_trunc('minute', now() - p_since);

    SELECT coalesce(sum(success), 0) AS success, coalesce(sum(insufficient_stock), 0) AS insufficient_stock,
           coalesce(sum(conflict), 0) AS conflict, coalesce(sum(empty_cart), 0) AS empty_cart,
           coalesce(sum(client_error), 0) AS client_error, coalesce(sum(maintenance), 0) AS maintenance,
           coalesce(sum(error), 0) AS error, coalesce(sum(retries), 0) AS retries,
           coalesce(sum(conflicts), 0) AS conflicts, coalesce(sum(latency_sum_s), 0) AS latency_sum_s
    INTO v_s
    FROM internal.checkout_stats WHERE minute >= v_from AND minute <= now();
    v_decided := v_s.success + v_s.insufficient_stock + v_s.conflict + v_s.error;
    v_failed := v_s.conflict + v_s.error;
    v_total := v_decided + v_s.empty_cart + v_s.client_error + v_s.maintenance;

    SELECT array_agg(le ORDER BY le), array_agg(n ORDER BY le) INTO v_le, v_n
    FROM (SELECT le, sum(n)::bigint AS n FROM internal.checkout_latency
          WHERE minute >= v_from AND minute <= now() GROUP BY le) b;

    SELECT count(*) INTO v_negative FROM "Product" WHERE stock < 0;
    SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) INTO v_orders
    FROM (SELECT o.status, count(*) AS n FROM "Order" o
          WHERE o."createdAt" >= v_from
            AND NOT EXISTS (SELECT 1 FROM internal.smoke_account s WHERE s.user_id = o."userId")  -- smoke-test orders are not business (sql/api/smoke.sql)
          GROUP BY o.status) o;

    RETURN jsonb_build_object(
        'from', v_from, 'until', now(),
        'checkouts', v_total,
        'byOutcome', jsonb_build_object('success', v_s.success, 'insufficient_stock', v_s.insufficient_stock,
                                        'conflict', v_s.conflict, 'empty_cart', v_s.empty_cart,
                                        'client_error', v_s.client_error, 'maintenance', v_s.maintenance,
                                        'error', v_s.error),
        'decidedCheckouts', v_decided,
        'failedCheckouts', v_failed,
        'successRate', CASE WHEN v_decided > 0 THEN round((v_decided - v_failed)::numeric / v_decided, 4) END,
        'concurrencyErrors', v_s.conflicts,
        'concurrencyErrorRate', CASE WHEN v_decided > 0 THEN round(v_s.conflicts::numeric / v_decided, 4) END,
        'retries', v_s.retries,
        'retriesPerCheckout', CASE WHEN v_total > 0 THEN round(v_s.retries::numeric / v_total, 4) END,
        'latencySeconds', jsonb_build_object(
            'p50', round(internal.histogram_quantile(0.50, v_le, v_n)::numeric, 4),
            'p95', round(internal.histogram_quantile(0.95, v_le, v_n)::numeric, 4),
            'p99', round(internal.histogram_quantile(0.99, v_le, v_n)::numeric, 4),
            'mean', CASE WHEN v_decided > 0 THEN round((v_s.latency_sum_s / v_decided)::numeric, 4) END),
        'negativeStock', v_negative,
        'ordersByStatus', v_orders);
END
$$;
COMMENT ON FUNCTION api.checkout_report(interval) IS
    'Day-one report over the last p_since: checkouts by outcome, success rate and ConcurrencyError rate (over the checkouts the server decided), retries per checkout, latency P50/P95/P99, negative stock, orders by status.';
REVOKE ALL ON FUNCTION api.checkout_report(interval) FROM PUBLIC;
