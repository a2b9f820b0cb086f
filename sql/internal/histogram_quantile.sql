-- internal.histogram_quantile: the q-quantile of a histogram given as bucket upper bounds (in
-- ascending order, the last may be Infinity) and non-cumulative counts, interpolated linearly
-- inside the bucket as Prometheus's histogram_quantile does; a quantile in the overflow bucket
-- is reported as the highest finite bound. NULL for an empty histogram.
-- Raises: nothing. Callers: api.checkout_report.
CREATE OR REPLACE FUNCTION internal.histogram_quantile(p_q double precision, p_le double precision[], p_n bigint[])
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_total numeric := 0;
    v_rank  numeric;
    v_cum   numeric := 0;
    v_lower double precision := 0;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_n), 0) LOOP
        v_total := v_total + p_n[i];
    END LOOP;
    IF v_total = 0 THEN
        RETURN NULL;
    END IF;
    v_rank := p_q * v_total;
    FOR i IN 1 .. cardinality(p_n) LOOP
        IF p_n[i] > 0 AND v_cum + p_n[i] >= v_rank THEN
            IF p_le[i] = 'Infinity' THEN
                RETURN v_lower;
            END IF;
            RETURN v_lower + (p_le[i] - v_lower) * ((v_rank - v_cum) / p_n[i])::double precision;
        END IF;
        v_cum := v_cum + p_n[i];
        IF p_le[i] <> 'Infinity' THEN
            v_lower := p_le[i];
        END IF;
    END LOOP;
    RETURN v_lower;
END
$$;
COMMENT ON FUNCTION internal.histogram_quantile(double precision, double precision[], bigint[]) IS
    'q-quantile of a bucketed histogram (upper bounds, non-cumulative counts), interpolated like Prometheus.';
REVOKE ALL ON FUNCTION internal.histogram_quantile(double precision, double precision[], bigint[]) FROM PUBLIC;
