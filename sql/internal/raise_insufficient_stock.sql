-- internal.raise_insufficient_stock: the one place MK400 is raised, so its message and DETAIL
-- shape ({"products": [{"productId", "requested", "available"}, ...]}) are the same everywhere.
-- Raises: MK400 always. Callers: api functions only.
CREATE OR REPLACE FUNCTION internal.raise_insufficient_stock(p_short jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'MK400',
        MESSAGE = 'Stock insuficiente: ' || (
            SELECT string_agg(format('%s (requested %s, available %s)',
                                     e->>'productId', e->>'requested', e->>'available'), ', ')
            FROM jsonb_array_elements(p_short) AS e),
        DETAIL = jsonb_build_object('products', p_short)::text,
        HINT = 'Lower the quantities to what is available and try again.';
END
$$;
COMMENT ON FUNCTION internal.raise_insufficient_stock(jsonb) IS
    'Raises MK400 (Stock insuficiente) with a JSON DETAIL listing each short product.';
REVOKE ALL ON FUNCTION internal.raise_insufficient_stock(jsonb) FROM PUBLIC;
