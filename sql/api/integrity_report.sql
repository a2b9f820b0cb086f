-- api.integrity_report: the deployment checklist's integrity checks, one row per check
-- (check_name, ok, detail): no negative stock, every version >= 1, stock equals the ledger, every
-- order has items and a total equal to their sum, no unpaid order past the hold window, no unpaid
-- order the expiry job had to skip (api.expiry_failures), an expiry runner running
-- (expiry_running, below), and every expected migration applied.
-- expiry_running is ok when pg_cron's job or the worker succeeded within its window
-- (api.expiry_status), and also when nothing runs but nothing needs to yet: no pg_cron schedule
-- is on and no unpaid order is past the hold window (a fresh database). It fails when no runner
-- runs and an unpaid order is past the hold window, or a pg_cron schedule is on but its job has not
-- succeeded within its window (a job that does not run is noticed before orders pile up). A
-- worker that stopped is noticed once an order passes the hold window: unlike the schedule, the
-- database does not know whether it is meant to run.
-- Raises: nothing. Callers: `python -m pyapp verify`, DBAs.
CREATE OR REPLACE FUNCTION api.integrity_report(p_hold interval DEFAULT '30 minutes')
RETURNS TABLE (check_name text, ok boolean, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n       bigint;
    v_ids     text;
    v_missing text[];
    v_stuck   bigint;
    v_running text;
    v_other   text;
BEGIN
    SELECT count(*), string_agg(id, ', ' ORDER BY id) INTO v_n, v_ids
    FROM (SELECT id FROM "Product" WHERE stock < 0 ORDER BY id) p;
    RETURN QUERY SELECT 'no_negative_stock', v_n = 0,
        CASE WHEN v_n = 0 THEN 'no product has stock below 0'
             ELSE format('%s products below 0: %s', v_n, left(v_ids, 500)) END;

    SELECT count(*) INTO v_n FROM "Product" WHERE "version" IS NULL OR "version" < 1;
    RETURN QUERY SELECT 'versions_positive', v_n = 0,
        CASE WHEN v_n = 0 THEN 'every product has version >= 1'
             ELSE format('%s products with version < 1', v_n) END;

    SELECT count(*), string_agg(id, ', ' ORDER BY id) INTO v_n, v_ids FROM (
        SELECT p.id FROM "Product" p
        LEFT JOIN (SELECT "productId", sum(delta) AS s FROM "StockLedger" GROUP BY 1) l ON l."productId" = p.id
        WHERE p.stock <> coalesce(l.s, 0)
        ORDER BY p.id LIMIT 1000) d;
    RETURN QUERY SELECT 'stock_matches_ledger', v_n = 0,
        CASE WHEN v_n = 0 THEN 'every product''s stock equals the sum of its ledger'
             ELSE format('%s products differ from their ledger: %s', v_n, left(v_ids, 500)) END;

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.total IS DISTINCT FROM (SELECT sum(i.quantity * i."unitPrice") FROM "OrderItem" i WHERE i."orderId" = o.id);
    RETURN QUERY SELECT 'orders_complete', v_n = 0,
        CASE WHEN v_n = 0 THEN 'every order has items and a total equal to their sum'
             ELSE format('%s orders without items or with a wrong total', v_n) END;

    SELECT count(*) INTO v_n FROM "Order"
    WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND "createdAt" < now() - p_hold;
    RETURN QUERY SELECT 'no_orders_stuck', v_n = 0,
        CASE WHEN v_n = 0 THEN format('no unpaid order older than %s', p_hold)
             ELSE format('%s unpaid orders older than %s: is the expiry job running?', v_n, p_hold) END;
    v_stuck := v_n;

    SELECT count(*), string_agg(f.order_id || ' (' || f.sqlstate || ')', ', ' ORDER BY f.order_id)
    INTO v_n, v_ids FROM api.expiry_failures() f;
    RETURN QUERY SELECT 'expiry_failures', v_n = 0,
        CASE WHEN v_n = 0 THEN 'no unpaid order failed to expire'
             ELSE format('%s unpaid orders could not be expired (see api.expiry_failures()): %s',
                         v_n, left(v_ids, 500)) END;

    SELECT string_agg(format('%s %s: %s', e.runner, e.state, e.detail), '; ' ORDER BY e.runner) FILTER (WHERE e.running),
           string_agg(format('%s %s: %s', e.runner, e.state, e.detail), '; ' ORDER BY e.runner)
               FILTER (WHERE NOT e.running AND e.state NOT IN ('never', 'off', 'unavailable'))
    INTO v_running, v_other
    FROM api.expiry_status() e WHERE e.runner IN ('pg_cron', 'worker');
    RETURN QUERY SELECT 'expiry_running',
        v_running IS NOT NULL OR (v_stuck = 0 AND NOT EXISTS (SELECT 1 FROM internal.expiry_schedule)),
        CASE WHEN v_running IS NOT NULL THEN v_running
             WHEN v_stuck = 0 AND NOT EXISTS (SELECT 1 FROM internal.expiry_schedule) THEN
                 'no expiry runner is running, and no unpaid order is past the hold window yet: start one '
                 '(python -m pyapp expiry-schedule on, or expire-orders --every 60)'
                 || coalesce('; ' || v_other, '')
             ELSE 'no expiry runner is running'
                 || CASE WHEN v_stuck > 0 THEN format(' and %s unpaid orders are older than %s', v_stuck, p_hold) ELSE '' END
                 || coalesce('; ' || v_other, '')
                 || ': python -m pyapp expiry-schedule status' END;

    IF to_regclass('public._yoyo_migration') IS NULL THEN
        RETURN QUERY SELECT 'migrations_applied', false, 'no yoyo migration table: the schema was not built by migrations';
    ELSE
        EXECUTE 'SELECT array_agg(e ORDER BY e) FROM unnest($1) e
                 WHERE e NOT IN (SELECT migration_id FROM public._yoyo_migration)'
        INTO v_missing USING internal.expected_migrations();
        RETURN QUERY SELECT 'migrations_applied', v_missing IS NULL,
            CASE WHEN v_missing IS NULL THEN format('all %s expected migrations applied',
                                                    cardinality(internal.expected_migrations()))
                 ELSE 'missing: ' || array_to_string(v_missing, ', ') END;
    END IF;
END
$$;
COMMENT ON FUNCTION api.integrity_report(interval) IS
    'Integrity checklist, one row per check: no negative stock, versions >= 1, stock = ledger, orders complete, none stuck past the hold window, no expiry failures, an expiry runner running, migrations applied.';
REVOKE ALL ON FUNCTION api.integrity_report(interval) FROM PUBLIC;
