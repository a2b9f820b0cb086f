-- api.decrement_stock: the versioned stock-decrement primitive.
-- With p_expected_version it is a compare-and-swap: the row changes only if its version still is
-- the one the caller read. Without it, an atomic conditional decrement (stock >= quantity) that
-- never conflicts, only runs short. Returns the product's new version.
-- Raises: MK503 maintenance; MKV00 bad quantity or reason; MK404 unknown product;
--         MK409 version mismatch (DETAIL has expectedVersion and currentVersion; not retryable as
--         is: re-read first); MK400 insufficient stock.
-- Callers: DBAs and scripts (not the HTTP app: checkout decrements stock itself).
CREATE OR REPLACE FUNCTION api.decrement_stock(
    p_product_id text,
    p_quantity integer,
    p_expected_version integer DEFAULT NULL,
    p_reason text DEFAULT 'ADJUSTMENT',
    p_order_id text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_version integer;
    v_current record;
BEGIN
    PERFORM internal.assert_writable();
    IF p_quantity IS NULL OR p_quantity < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'quantity must be a positive integer',
            DETAIL = jsonb_build_object('field', 'quantity', 'value', p_quantity)::text;
    END IF;
    IF p_reason IS NULL OR p_reason NOT IN ('CHECKOUT', 'ADJUSTMENT') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'a decrement''s reason is CHECKOUT or ADJUSTMENT',
            DETAIL = jsonb_build_object('field', 'reason', 'value', p_reason)::text;
    END IF;

    PERFORM set_config('mk.stock_reason', p_reason, true), set_config('mk.order_id', coalesce(p_order_id, ''), true);
    UPDATE "Product" p SET stock = p.stock - p_quantity
    WHERE p.id = p_product_id AND p.stock >= p_quantity
      AND (p_expected_version IS NULL OR p."version" = p_expected_version)
    RETURNING p."version" INTO v_version;
    -- v_version, not FOUND: the PERFORM below resets FOUND.
    PERFORM set_config('mk.stock_reason', '', true), set_config('mk.order_id', '', true);
    IF v_version IS NOT NULL THEN
        RETURN v_version;
    END IF;

    SELECT p.stock, p."version" INTO v_current FROM "Product" p WHERE p.id = p_product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'product not found',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    IF p_expected_version IS NOT NULL AND v_current."version" <> p_expected_version THEN
        RAISE EXCEPTION USING ERRCODE = 'MK409',
            MESSAGE = format('product %s changed: expected version %s, current version %s',
                             p_product_id, p_expected_version, v_current."version"),
            DETAIL = jsonb_build_object('productId', p_product_id, 'expectedVersion', p_expected_version,
                                        'currentVersion', v_current."version", 'retryable', false)::text,
            HINT = 'Read the product again and retry with its current version.';
    END IF;
    PERFORM internal.raise_insufficient_stock(jsonb_build_array(jsonb_build_object(
        'productId', p_product_id, 'requested', p_quantity, 'available', v_current.stock)));
    RETURN NULL;  -- not reached
END
$$;
COMMENT ON FUNCTION api.decrement_stock(text, integer, integer, text, text) IS
    'Versioned stock decrement: compare-and-swap on expected_version (MK409 on mismatch) or atomic conditional decrement (MK400 when short); returns the new version.';
REVOKE ALL ON FUNCTION api.decrement_stock(text, integer, integer, text, text) FROM PUBLIC;
