-- api.record_checkout_stats: adds one HTTP worker's buffered figures to the per-minute totals in
-- internal.checkout_stats and internal.checkout_latency (upserts, so workers flushing the same
-- minute add up). p_stats is a JSON array of objects, one per minute:
--   {"minute": "2026-05-01T12:34:00Z", "success": 3, "insufficient_stock": 1, "conflict": 0,
--    "empty_cart": 0, "client_error": 2, "maintenance": 0, "error": 0, "retries": 2, "conflicts": 2,
--    "latency_sum_s": 0.41, "latency": {"0.005": 1, "0.01": 3, "+Inf": 0}}
-- where the outcomes are those of pyapp.metrics.checkout_outcome (an omitted one counts 0, as
-- from a worker older than client_error and maintenance), "latency" maps each bucket's upper
-- bound in seconds to a non-cumulative count (send every bucket, zeros included: the report
-- interpolates between neighbouring bounds), and "conflicts" counts ConcurrencyErrors of every
-- route. Minutes are written in time order, so two workers flushing overlapping minutes cannot
-- deadlock. Works during maintenance mode on purpose: the 503s answered then are figures too.
-- Returns how many minutes were recorded.
-- Raises: MKV00 when the payload is not such an array (DETAIL names the offending element),
--         including a minute more than a day ahead, infinite or NaN figures.
-- Callers: app.record_checkout_stats (every HTTP worker, every ~10 s and at exit).
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
            -- A worker's clock may run a little ahead, never a day; infinity is not a minute.
            -- NaN passes CHECK (x >= 0) (PostgreSQL sorts it above every number), so it is refused here.
            IF NOT isfinite(v_minute) OR v_minute > now() + interval '1 day'
               OR (v_row ->> 'latency_sum_s')::double precision IN ('NaN', 'Infinity')
               OR EXISTS (SELECT 1 FROM jsonb_object_keys(coalesce(v_row -> 'latency', '{}')) AS k (key)
                          WHERE k.key::double precision = 'NaN') THEN
                RAISE EXCEPTION USING ERRCODE = '22023';
            END IF;
            INSERT INTO internal.checkout_stats AS s
                (minute, success, insufficient_stock, conflict, empty_cart, client_error, maintenance, error,
                 retries, conflicts, latency_sum_s)
            VALUES (v_minute,
                    coalesce((v_row ->> 'success')::bigint, 0),
                    coalesce((v_row ->> 'insufficient_stock')::bigint, 0),
                    coalesce((v_row ->> 'conflict')::bigint, 0),
                    coalesce((v_row ->> 'empty_cart')::bigint, 0),
                    coalesce((v_row ->> 'client_error')::bigint, 0),
                    coalesce((v_row ->> 'maintenance')::bigint, 0),
                    coalesce((v_row ->> 'error')::bigint, 0),
                    coalesce((v_row ->> 'retries')::bigint, 0),
                    coalesce((v_row ->> 'conflicts')::bigint, 0),
                    coalesce((v_row ->> 'latency_sum_s')::double precision, 0))
            ON CONFLICT (minute) DO UPDATE SET
                success            = s.success + EXCLUDED.success,
                insufficient_stock = s.insufficient_stock + EXCLUDED.insufficient_stock,
                conflict           = s.conflict + EXCLUDED.conflict,
                empty_cart         = s.empty_cart + EXCLUDED.empty_cart,
                client_error       = s.client_error + EXCLUDED.client_error,
                maintenance        = s.maintenance + EXCLUDED.maintenance,
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
                MESSAGE = format('stats element %s is malformed: minute must be a timestamp no later than a day from now, counts non-negative integers, latency_sum_s a finite non-negative number, latency an object of bucket bounds', v_idx),
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
