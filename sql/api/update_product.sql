-- api.update_product: a seller's or admin's edit of a product, guarded by its version.
-- p_changes may hold "name", "description", "price", "maxPerBuyer" (1..10000, or null for no
-- cap), and either "stock" (the new absolute stock) or "stockDelta" (added to the stock; a positive
-- one is recorded as RESTOCK, a negative one as ADJUSTMENT). A stock raise is refused when the new
-- stock plus the units its returnable orders (PENDING_PAYMENT, PAYMENT_FAILED, PAID) hold would
-- exceed 1,000,000,000: cancelling or expiring those orders gives their units back, and that must
-- never overflow the integer stock (it would roll back a whole expiry batch). When p_actor_id is
-- given, it must be the product's seller or an ADMIN.
-- Raises: MK503 maintenance; MKV00 unknown or ill-typed change, or a stock raise past the cap
--         (DETAIL: field "stock", requested, held, maxStock); MK404 unknown product; MK403 actor is
--         neither its seller nor an admin; MK409 stale p_expected_version (DETAIL has
--         currentVersion); MK400 a stock change that would go below 0.
-- Callers: app.update_product (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.update_product(
    p_product_id text,
    p_expected_version integer,
    p_changes jsonb,
    p_actor_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_row       "Product";
    v_unknown   text[];
    v_name      text;
    v_desc      text;
    v_price     numeric;
    v_stock     numeric;
    v_max       numeric;
    v_held      bigint;
BEGIN
    PERFORM internal.assert_writable();
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' OR p_changes = '{}'::jsonb THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'changes must be a non-empty JSON object',
            DETAIL = jsonb_build_object('field', 'changes')::text;
    END IF;
    SELECT array_agg(k ORDER BY k) INTO v_unknown FROM jsonb_object_keys(p_changes) AS k
    WHERE k NOT IN ('name', 'description', 'price', 'stock', 'stockDelta', 'maxPerBuyer');
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'unknown fields: ' || array_to_string(v_unknown, ', '),
            DETAIL = jsonb_build_object('fields', v_unknown)::text,
            HINT = 'Allowed: name, description, price, stock, stockDelta, maxPerBuyer.';
    END IF;
    IF p_changes ? 'stock' AND p_changes ? 'stockDelta' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'give either stock or stockDelta, not both',
            DETAIL = jsonb_build_object('fields', ARRAY['stock', 'stockDelta'])::text;
    END IF;
    v_name := internal.json_text(p_changes, 'name', 1, 200);
    v_desc := internal.json_text(p_changes, 'description', 0, 5000);
    v_price := internal.json_number(p_changes, 'price', 0, 99999999.99, false);
    v_stock := coalesce(internal.json_number(p_changes, 'stock', 0, 1000000000, true),
                        internal.json_number(p_changes, 'stockDelta', -1000000000, 1000000000, true));
    -- JSON null clears the cap, so it is not read as a number.
    IF jsonb_typeof(p_changes -> 'maxPerBuyer') <> 'null' THEN
        v_max := internal.json_number(p_changes, 'maxPerBuyer', 1, 10000, true);
    END IF;
    IF p_expected_version IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'expected version is required',
            DETAIL = jsonb_build_object('field', 'version')::text;
    END IF;

    SELECT * INTO v_row FROM "Product" p WHERE p.id = p_product_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'product not found',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    IF p_actor_id IS NOT NULL AND p_actor_id IS DISTINCT FROM v_row."sellerId"
       AND NOT EXISTS (SELECT 1 FROM "User" u WHERE u.id = p_actor_id AND u.role = 'ADMIN') THEN
        RAISE EXCEPTION USING ERRCODE = 'MK403', MESSAGE = 'only the product''s seller or an admin may edit it',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    IF v_row."version" <> p_expected_version THEN
        RAISE EXCEPTION USING ERRCODE = 'MK409',
            MESSAGE = format('product %s changed: expected version %s, current version %s',
                             p_product_id, p_expected_version, v_row."version"),
            DETAIL = jsonb_build_object('productId', p_product_id, 'expectedVersion', p_expected_version,
                                        'currentVersion', v_row."version", 'retryable', false,
                                        'current', internal.product_json(v_row))::text,
            HINT = 'Read the product again and apply the change to its current version.';
    END IF;

    IF p_changes ? 'stockDelta' THEN
        v_stock := v_row.stock + v_stock;
    END IF;
    IF v_stock < 0 THEN
        PERFORM internal.raise_insufficient_stock(jsonb_build_array(jsonb_build_object(
            'productId', p_product_id, 'requested', v_row.stock - v_stock, 'available', v_row.stock)));
    END IF;
    -- Only a raise is checked: lowering the stock of a product already past the cap (a DBA's
    -- UPDATE) moves it back towards safety. Checkout, cancel and expiry keep stock + held constant,
    -- so the cap checked here holds until the next raise.
    IF v_stock > v_row.stock THEN
        SELECT coalesce(sum(i.quantity), 0) INTO v_held
        FROM "OrderItem" i JOIN "Order" o ON o.id = i."orderId"
        WHERE i."productId" = p_product_id AND o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED', 'PAID');
        IF v_stock + v_held > 1000000000 THEN
            RAISE EXCEPTION USING ERRCODE = 'MKV00',
                MESSAGE = format('stock %s plus the %s units held by open orders would exceed 1000000000',
                                 v_stock, v_held),
                DETAIL = jsonb_build_object('field', 'stock', 'requested', v_stock, 'held', v_held,
                                            'maxStock', 1000000000 - v_held)::text,
                HINT = 'Stock plus the units of unpaid or paid orders (which a cancel gives back) may not exceed 1,000,000,000.';
        END IF;
    END IF;
    PERFORM set_config('mk.stock_reason',
                       CASE WHEN v_stock > v_row.stock THEN 'RESTOCK' ELSE 'ADJUSTMENT' END, true),
            set_config('mk.order_id', '', true);

    UPDATE "Product" p SET
        name = coalesce(v_name, p.name),
        description = coalesce(v_desc, p.description),
        price = coalesce(v_price, p.price),
        stock = coalesce(v_stock::integer, p.stock),
        "maxPerBuyer" = CASE WHEN p_changes ? 'maxPerBuyer' THEN v_max::integer ELSE p."maxPerBuyer" END
    WHERE p.id = p_product_id
    RETURNING * INTO v_row;
    PERFORM set_config('mk.stock_reason', '', true);
    RETURN internal.product_json(v_row);
END
$$;
COMMENT ON FUNCTION api.update_product(text, integer, jsonb, text) IS
    'Edits a product (name, description, price, maxPerBuyer, stock or stockDelta) if expected_version is still current (MK409 otherwise); stock plus held units stays within 1,000,000,000.';
REVOKE ALL ON FUNCTION api.update_product(text, integer, jsonb, text) FROM PUBLIC;
