-- Rollback of 0009: restates the four files as migration 0004 defined them.

-- ==== sql/internal/expected_migrations.sql (as in 0004) ====
-- internal.expected_migrations: the yoyo migration ids this definition of the functions belongs
-- to. Each new migration restates this function with its own id added, so
-- api.integrity_report() can tell when a database lags behind its code.
-- Raises: nothing. Callers: api.integrity_report.
CREATE OR REPLACE FUNCTION internal.expected_migrations()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[
        '0001_initial_marketplace_schema',
        '0002_add_version_to_product',
        '0003_core_rules',
        '0004_api_functions',
        '0005_checkout_stats',
        '0006_login_throttle'
    ]
$$;
COMMENT ON FUNCTION internal.expected_migrations() IS 'The migration ids the current functions expect to be applied.';
REVOKE ALL ON FUNCTION internal.expected_migrations() FROM PUBLIC;

-- ==== sql/api/evaluate_alerts.sql (as in 0004) ====
-- api.evaluate_alerts: the operational alert rules evaluated on live data, one row per rule
-- (rule, severity, value, threshold, firing, detail); a rule fires when value > threshold:
--   negative_stock (critical): products with stock < 0;
--   concurrency_errors (warning): ConcurrencyErrors persisted by the HTTP workers in the window;
--   failed_or_cancelled_orders (warning): orders that became PAYMENT_FAILED or CANCELLED in the window;
--   unpaid_past_hold (warning): unpaid orders older than the hold window (the expiry job is not running).
-- monitoring/alerts.yml holds the same rules for Prometheus.
-- Raises: MKV00 for a NULL or negative threshold or window. Callers: `python -m pyapp alerts`,
-- DBAs, marketplace_app.
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
    IF p_hold IS NULL OR p_window IS NULL OR p_hold < interval '0' OR p_window <= interval '0'
       OR coalesce(least(p_max_negative_stock, p_max_concurrency_errors, p_max_failed_orders,
                         p_max_unpaid_past_hold), -1) < 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'thresholds and windows must be non-negative',
            DETAIL = jsonb_build_object('field', 'threshold')::text;
    END IF;

    SELECT count(*) INTO v_n FROM "Product" p WHERE p.stock < 0;
    RETURN QUERY SELECT 'negative_stock', 'critical', v_n, p_max_negative_stock, v_n > p_max_negative_stock,
        format('%s products with stock below 0', v_n);

    -- A minute row counts when any part of it lies in the window.
    SELECT coalesce(sum(s.conflicts), 0) INTO v_n FROM internal.checkout_stats s
    WHERE s.minute > now() - p_window - interval '1 minute';
    RETURN QUERY SELECT 'concurrency_errors', 'warning', v_n, p_max_concurrency_errors, v_n > p_max_concurrency_errors,
        format('%s ConcurrencyErrors in the last %s', v_n, p_window);

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.status IN ('PAYMENT_FAILED', 'CANCELLED') AND o."updatedAt" > now() - p_window;
    RETURN QUERY SELECT 'failed_or_cancelled_orders', 'warning', v_n, p_max_failed_orders, v_n > p_max_failed_orders,
        format('%s orders became PAYMENT_FAILED or CANCELLED in the last %s', v_n, p_window);

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND o."createdAt" < now() - p_hold;
    RETURN QUERY SELECT 'unpaid_past_hold', 'warning', v_n, p_max_unpaid_past_hold, v_n > p_max_unpaid_past_hold,
        format('%s unpaid orders older than %s: is expire-orders running?', v_n, p_hold);
END
$$;
COMMENT ON FUNCTION api.evaluate_alerts(interval, interval, bigint, bigint, bigint, bigint) IS
    'Operational alert rules on live data (negative stock, ConcurrencyErrors, failed or cancelled orders, unpaid past the hold), one row each.';
REVOKE ALL ON FUNCTION api.evaluate_alerts(interval, interval, bigint, bigint, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.evaluate_alerts(interval, interval, bigint, bigint, bigint, bigint) TO marketplace_app;

-- ==== sql/api/record_checkout_stats.sql (as in 0004) ====
-- api.record_checkout_stats: adds one HTTP worker's buffered figures to the per-minute totals in
-- internal.checkout_stats and internal.checkout_latency (upserts, so workers flushing the same
-- minute add up). p_stats is a JSON array of objects, one per minute:
--   {"minute": "2026-05-01T12:34:00Z", "success": 3, "insufficient_stock": 1, "conflict": 0,
--    "empty_cart": 0, "error": 0, "retries": 2, "conflicts": 2, "latency_sum_s": 0.41,
--    "latency": {"0.005": 1, "0.01": 3, "+Inf": 0}}
-- where "latency" maps each bucket's upper bound in seconds to a non-cumulative count (send every
-- bucket, zeros included: the report interpolates between neighbouring bounds), and
-- "conflicts" counts ConcurrencyErrors of every route. Minutes are written in time order, so two
-- workers flushing overlapping minutes cannot deadlock. Works during maintenance mode on purpose:
-- the 503s answered then are figures too. Returns how many minutes were recorded.
-- Raises: MKV00 when the payload is not such an array (DETAIL names the offending element).
-- Callers: marketplace_app (every HTTP worker, every ~10 s and at exit).
CREATE OR REPLACE FUNCTION api.record_checkout_stats(p_stats jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_row    jsonb;
    v_idx    bigint;
    v_minute timestamptz;
    v_n      integer := 0;
BEGIN
    IF p_stats IS NULL OR jsonb_typeof(p_stats) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'stats must be a JSON array of per-minute objects',
            DETAIL = jsonb_build_object('field', 'stats')::text;
    END IF;
    FOR v_row, v_idx IN
        SELECT e, i FROM jsonb_array_elements(p_stats) WITH ORDINALITY AS t (e, i)
        ORDER BY CASE WHEN jsonb_typeof(e) = 'object' THEN e ->> 'minute' END, i
    LOOP
        BEGIN
            IF jsonb_typeof(v_row) <> 'object' OR v_row ->> 'minute' IS NULL
               OR jsonb_typeof(coalesce(v_row -> 'latency', '{}')) <> 'object' THEN
                RAISE EXCEPTION USING ERRCODE = '22023';
            END IF;
            v_minute := date_trunc('minute', (v_row ->> 'minute')::timestamptz);
            INSERT INTO internal.checkout_stats AS s
                (minute, success, insufficient_stock, conflict, empty_cart, error, retries, conflicts, latency_sum_s)
            VALUES (v_minute,
                    coalesce((v_row ->> 'success')::bigint, 0),
                    coalesce((v_row ->> 'insufficient_stock')::bigint, 0),
                    coalesce((v_row ->> 'conflict')::bigint, 0),
                    coalesce((v_row ->> 'empty_cart')::bigint, 0),
                    coalesce((v_row ->> 'error')::bigint, 0),
                    coalesce((v_row ->> 'retries')::bigint, 0),
                    coalesce((v_row ->> 'conflicts')::bigint, 0),
                    coalesce((v_row ->> 'latency_sum_s')::double precision, 0))
            ON CONFLICT (minute) DO UPDATE SET
                success            = s.success + EXCLUDED.success,
                insufficient_stock = s.insufficient_stock + EXCLUDED.insufficient_stock,
                conflict           = s.conflict + EXCLUDED.conflict,
                empty_cart         = s.empty_cart + EXCLUDED.empty_cart,
                error              = s.error + EXCLUDED.error,
                retries            = s.retries + EXCLUDED.retries,
                conflicts          = s.conflicts + EXCLUDED.conflicts,
                latency_sum_s      = s.latency_sum_s + EXCLUDED.latency_sum_s;
            INSERT INTO internal.checkout_latency AS l (minute, le, n)
            SELECT v_minute, b.le, b.n
            FROM (SELECT CASE WHEN key IN ('+Inf', 'Infinity', 'inf') THEN 'Infinity'::double precision
                              ELSE key::double precision END AS le,
                         value::bigint AS n
                  FROM jsonb_each_text(coalesce(v_row -> 'latency', '{}'))) b
            ORDER BY b.le
            ON CONFLICT (minute, le) DO UPDATE SET n = l.n + EXCLUDED.n;
        EXCEPTION WHEN data_exception OR check_violation OR not_null_violation THEN
            RAISE EXCEPTION USING ERRCODE = 'MKV00',
                MESSAGE = format('stats element %s is malformed: minute must be a timestamp, counts non-negative integers, latency an object of bucket bounds', v_idx),
                DETAIL = jsonb_build_object('field', 'stats', 'element', v_idx)::text;
        END;
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION api.record_checkout_stats(jsonb) IS
    'Adds an HTTP worker''s per-minute checkout outcomes, retries, ConcurrencyErrors and latency buckets to the persisted totals.';
REVOKE ALL ON FUNCTION api.record_checkout_stats(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.record_checkout_stats(jsonb) TO marketplace_app;

-- ==== sql/api/checkout_report.sql (as in 0004) ====
-- api.checkout_report: the deployment checklist's day-one report over the last p_since, from the
-- persisted per-minute figures (internal.checkout_stats, which survive server restarts) and the
-- live tables: checkouts by outcome, success rate, ConcurrencyErrors, retries per checkout,
-- latency P50/P95/P99 (interpolated inside the persisted buckets), negative stock now, and the
-- orders created in the window by status. Minutes are whole: the window starts at the minute
-- that contains now() - p_since.
-- Raises: MKV00 when p_since is not a positive interval. Callers: `python -m pyapp report`, DBAs,
-- marketplace_app (dashboards).
CREATE OR REPLACE FUNCTION api.checkout_report(p_since interval DEFAULT '24 hours')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_from     timestamptz;
    v_s        record;
    v_total    bigint;
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
           coalesce(sum(error), 0) AS error, coalesce(sum(retries), 0) AS retries,
           coalesce(sum(conflicts), 0) AS conflicts, coalesce(sum(latency_sum_s), 0) AS latency_sum_s
    INTO v_s
    FROM internal.checkout_stats WHERE minute >= v_from;
    v_total := v_s.success + v_s.insufficient_stock + v_s.conflict + v_s.empty_cart + v_s.error;

    SELECT array_agg(le ORDER BY le), array_agg(n ORDER BY le) INTO v_le, v_n
    FROM (SELECT le, sum(n)::bigint AS n FROM internal.checkout_latency
          WHERE minute >= v_from GROUP BY le) b;

    SELECT count(*) INTO v_negative FROM "Product" WHERE stock < 0;
    SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) INTO v_orders
    FROM (SELECT status, count(*) AS n FROM "Order" WHERE "createdAt" >= v_from GROUP BY status) o;

    RETURN jsonb_build_object(
        'from', v_from, 'until', now(),
        'checkouts', v_total,
        'byOutcome', jsonb_build_object('success', v_s.success, 'insufficient_stock', v_s.insufficient_stock,
                                        'conflict', v_s.conflict, 'empty_cart', v_s.empty_cart, 'error', v_s.error),
        'successRate', CASE WHEN v_total > 0 THEN round(v_s.success::numeric / v_total, 4) END,
        'concurrencyErrors', v_s.conflicts,
        'retries', v_s.retries,
        'retriesPerCheckout', CASE WHEN v_total > 0 THEN round(v_s.retries::numeric / v_total, 4) END,
        'latencySeconds', jsonb_build_object(
            'p50', round(internal.histogram_quantile(0.50, v_le, v_n)::numeric, 4),
            'p95', round(internal.histogram_quantile(0.95, v_le, v_n)::numeric, 4),
            'p99', round(internal.histogram_quantile(0.99, v_le, v_n)::numeric, 4),
            'mean', CASE WHEN v_total > 0 THEN round((v_s.latency_sum_s / v_total)::numeric, 4) END),
        'negativeStock', v_negative,
        'ordersByStatus', v_orders);
END
$$;
COMMENT ON FUNCTION api.checkout_report(interval) IS
    'Day-one report over the last p_since: checkouts by outcome, success rate, ConcurrencyErrors, retries per checkout, latency P50/P95/P99, negative stock, orders by status.';
REVOKE ALL ON FUNCTION api.checkout_report(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.checkout_report(interval) TO marketplace_app;
