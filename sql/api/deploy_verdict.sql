-- api.deploy_verdict: the deployment checklist's verdict over the last p_since (the hour-1 check is
-- '1 hour', the 24-hour check '24 hours': the same targets). The targets live here and nowhere
-- else; `report --check`, the operator page and the tests read them from this function's answer:
--   checkout success rate        > 95 %   (successRate of api.checkout_report)
--   checkout latency P95         < 2 s    (from the persisted latency histogram)
--   ConcurrencyError rate        < 1 %    (ConcurrencyErrors / checkouts the server decided)
-- Each check is FAIL when its value misses the target, WARN when it is at least 80 % of the way to
-- the threshold (from 100 % success, 0 s, 0 ConcurrencyErrors: success rate <= 96 %, P95 >= 1.6 s,
-- ConcurrencyError rate >= 0.8 %), PASS otherwise. With fewer than p_min_checkouts decided
-- checkouts in the window every check is WARN ("insufficient data"), except a rate that misses its
-- target even counted against p_min_checkouts checkouts (as if the window had reached them and the
-- rest had all gone well): that one is FAIL. The default of 200 is where one ConcurrencyError (0.5 %) neither passes nor
-- fails a window by itself, and where 10 failed checkouts are the 5 % that fail the success rate.
-- The verdict (status) is the worst check's status.
-- Returns {status, from, until, since, decidedCheckouts, minCheckouts, insufficientData,
--          checks: [{name, title, op, threshold, warnAt, unit, value, status, reason}, ...]}.
-- Raises: MKV00 when p_since is not a positive interval or p_min_checkouts is below 1.
-- Callers: `python -m pyapp report --check`, api.dashboard_stats (the operator page), DBAs.
CREATE OR REPLACE FUNCTION api.deploy_verdict(p_since interval DEFAULT '1 hour', p_min_checkouts integer DEFAULT 200)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    c_warn     CONSTANT numeric := 0.8;  -- WARN from this far on the way to a threshold
    v_rep      jsonb;
    v_decided  bigint;
    v_short    boolean;
    v_t        record;
    v_used     numeric;  -- how far the value is on the way to the threshold: 1 misses the target
    v_sure     numeric;  -- the same for a rate counted against at least p_min_checkouts checkouts
    v_status   text;
    v_reason   text;
    v_checks   jsonb := '[]'::jsonb;
    v_worst    integer := 0;
BEGIN
    IF p_min_checkouts IS NULL OR p_min_checkouts < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'min_checkouts must be a whole number of at least 1',
            DETAIL = jsonb_build_object('field', 'min_checkouts')::text;
    END IF;
    v_rep := api.checkout_report(p_since);
    v_decided := (v_rep ->> 'decidedCheckouts')::bigint;
    v_short := v_decided < p_min_checkouts;

    -- The checklist's targets. op '>': the value must stay above the threshold (the way to it
    -- starts at 1); op '<': below it (the way starts at 0). events: for a rate, the count it is
    -- made of, to judge it against at least p_min_checkouts checkouts.
    FOR v_t IN
        SELECT * FROM (VALUES
            (1, 'successRate', 'checkout success rate', '>', 0.95, 'ratio',
             (v_rep ->> 'successRate')::numeric, (v_rep ->> 'failedCheckouts')::numeric),
            (2, 'p95LatencySeconds', 'checkout latency P95', '<', 2, 'seconds',
             (v_rep -> 'latencySeconds' ->> 'p95')::numeric, NULL::numeric),
            (3, 'concurrencyErrorRate', 'ConcurrencyError rate', '<', 0.01, 'ratio',
             (v_rep ->> 'concurrencyErrorRate')::numeric, (v_rep ->> 'concurrencyErrors')::numeric)
        ) AS t (ord, name, title, op, threshold, unit, value, events)
        ORDER BY ord
    LOOP
        IF v_t.op = '>' THEN
            v_used := (1 - v_t.value) / (1 - v_t.threshold);
            v_sure := v_t.events / greatest(v_decided, p_min_checkouts) / (1 - v_t.threshold);
        ELSE
            v_used := v_t.value / v_t.threshold;
            v_sure := v_t.events / greatest(v_decided, p_min_checkouts) / v_t.threshold;
        END IF;
        IF v_sure >= 1 OR (NOT v_short AND v_used >= 1) THEN
            v_status := 'FAIL';
            v_reason := 'misses the target' || CASE WHEN v_short THEN format(
                ' even counted against %s checkouts (%s in the window)', p_min_checkouts, v_decided) ELSE '' END;
        ELSIF v_short THEN
            v_status := 'WARN';
            v_reason := format('insufficient data: %s of %s checkouts', v_decided, p_min_checkouts);
        ELSIF v_used IS NULL THEN
            v_status := 'WARN';
            v_reason := 'no figure in the window';
        ELSIF v_used >= c_warn THEN
            v_status := 'WARN';
            v_reason := format('at least %s %% of the way to the threshold', round(c_warn * 100));
        ELSE
            v_status := 'PASS';
            v_reason := NULL;
        END IF;
        v_worst := greatest(v_worst, CASE v_status WHEN 'FAIL' THEN 2 WHEN 'WARN' THEN 1 ELSE 0 END);
        v_checks := v_checks || jsonb_build_object(
            'name', v_t.name, 'title', v_t.title, 'op', v_t.op, 'unit', v_t.unit,
            'threshold', trim_scale(v_t.threshold),
            'warnAt', trim_scale(CASE WHEN v_t.op = '>' THEN 1 - c_warn * (1 - v_t.threshold)
                                      ELSE c_warn * v_t.threshold END),
            'value', v_t.value, 'status', v_status, 'reason', v_reason);
    END LOOP;

    RETURN jsonb_build_object(
        'status', (ARRAY['PASS', 'WARN', 'FAIL'])[v_worst + 1],
        'from', v_rep -> 'from', 'until', v_rep -> 'until', 'since', p_since::text,
        'decidedCheckouts', v_decided, 'minCheckouts', p_min_checkouts, 'insufficientData', v_short,
        'checks', v_checks);
END
$$;
COMMENT ON FUNCTION api.deploy_verdict(interval, integer) IS
    'The deployment checklist''s verdict over the last p_since: success rate > 95 %, checkout P95 < 2 s, ConcurrencyError rate < 1 %, each PASS, WARN (80 % of the way to the threshold, or fewer than p_min_checkouts checkouts) or FAIL.';
REVOKE ALL ON FUNCTION api.deploy_verdict(interval, integer) FROM PUBLIC;
