-- api.add_to_cart: adds a cart line or raises its quantity. It reserves nothing: a cart may ask for
-- more than is in stock, and checkout decides. A product with a maxPerBuyer refuses a line whose
-- new quantity, with the units the buyer holds in unpaid orders, exceeds it (checkout checks again).
-- Returns the line.
-- Raises: MK503 maintenance; MKV00 quantity outside 1..10000 (also for the line's new total);
--         MK404 unknown user or product; MKQ09 over the product's maxPerBuyer (DETAIL:
--         productId, maxPerBuyer, requested, held).
-- Callers: app.add_to_cart (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.add_to_cart(p_user_id text, p_product_id text, p_quantity integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_qty        integer;
    v_user_ok    boolean;
    v_product_ok boolean;
    v_cap        integer;
BEGIN
    PERFORM internal.assert_writable();
    IF p_quantity IS NULL OR p_quantity NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'quantity must be between 1 and 10000',
            DETAIL = jsonb_build_object('field', 'quantity', 'value', p_quantity)::text;
    END IF;
    -- "CartItem" has no foreign key to "Product" (see migration 0003): look for it here.
    SELECT EXISTS (SELECT 1 FROM "User" u WHERE u.id = p_user_id), p.id IS NOT NULL, p."maxPerBuyer"
    INTO v_user_ok, v_product_ok, v_cap
    FROM (VALUES (1)) AS one (x) LEFT JOIN "Product" p ON p.id = p_product_id;
    IF NOT v_user_ok THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'user not found',
            DETAIL = jsonb_build_object('userId', p_user_id)::text;
    END IF;
    IF NOT v_product_ok THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'product not found',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    INSERT INTO "CartItem" ("userId", "productId", quantity)
    VALUES (p_user_id, p_product_id, p_quantity)
    ON CONFLICT ("userId", "productId") DO UPDATE SET quantity = "CartItem".quantity + EXCLUDED.quantity
    RETURNING quantity INTO v_qty;
    IF v_qty > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'a cart line holds at most 10000 units',
            DETAIL = jsonb_build_object('field', 'quantity', 'value', v_qty)::text;
    END IF;
    -- After the upsert: a line claimed by a checkout of this buyer still in flight makes the
    -- upsert wait for that checkout to end, so the held units read here include its order.
    IF v_cap IS NOT NULL THEN
        PERFORM internal.assert_max_per_buyer(p_user_id, ARRAY[p_product_id], ARRAY[v_qty], ARRAY[v_cap]);
    END IF;
    RETURN jsonb_build_object('productId', p_product_id, 'quantity', v_qty);
END
$$;
COMMENT ON FUNCTION api.add_to_cart(text, text, integer) IS
    'Adds a cart line or raises its quantity; reserves no stock (checkout decides); MKQ09 over the product''s maxPerBuyer.';
REVOKE ALL ON FUNCTION api.add_to_cart(text, text, integer) FROM PUBLIC;

-- api.set_cart_quantity: sets the quantity of an existing cart line; like api.add_to_cart, it
-- refuses a quantity over the product's maxPerBuyer (unpaid units included).
-- Raises: MK503 maintenance; MKV00 quantity outside 1..10000; MK404 no such line; MKQ09 over the
--         product's maxPerBuyer.
-- Callers: app.set_cart_quantity (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.set_cart_quantity(p_user_id text, p_product_id text, p_quantity integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cap integer;
BEGIN
    PERFORM internal.assert_writable();
    IF p_quantity IS NULL OR p_quantity NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'quantity must be between 1 and 10000',
            DETAIL = jsonb_build_object('field', 'quantity', 'value', p_quantity)::text;
    END IF;
    UPDATE "CartItem" c SET quantity = p_quantity
    WHERE c."userId" = p_user_id AND c."productId" = p_product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'no such cart line',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    SELECT p."maxPerBuyer" INTO v_cap FROM "Product" p WHERE p.id = p_product_id;
    IF v_cap IS NOT NULL THEN
        PERFORM internal.assert_max_per_buyer(p_user_id, ARRAY[p_product_id], ARRAY[p_quantity], ARRAY[v_cap]);
    END IF;
    RETURN jsonb_build_object('productId', p_product_id, 'quantity', p_quantity);
END
$$;
COMMENT ON FUNCTION api.set_cart_quantity(text, text, integer) IS
    'Sets the quantity of an existing cart line; MKQ09 over the product''s maxPerBuyer.';
REVOKE ALL ON FUNCTION api.set_cart_quantity(text, text, integer) FROM PUBLIC;

-- api.remove_from_cart: removes one cart line.
-- Raises: MK503 maintenance; MK404 no such line. Callers: app.remove_from_cart (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.remove_from_cart(p_user_id text, p_product_id text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM internal.assert_writable();
    DELETE FROM "CartItem" c WHERE c."userId" = p_user_id AND c."productId" = p_product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'no such cart line',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    RETURN jsonb_build_object('productId', p_product_id, 'removed', true);
END
$$;
COMMENT ON FUNCTION api.remove_from_cart(text, text) IS 'Removes one line from the buyer''s cart.';
REVOKE ALL ON FUNCTION api.remove_from_cart(text, text) FROM PUBLIC;

-- api.get_cart: the buyer's cart with current prices, availability and total.
-- Raises: nothing. Callers: app.get_cart (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.get_cart(p_user_id text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'items', coalesce(jsonb_agg(jsonb_build_object(
                     'productId', c."productId", 'name', p.name, 'unitPrice', p.price,
                     'quantity', c.quantity, 'available', p.stock) ORDER BY c."productId"), '[]'::jsonb),
        'total', coalesce(sum(p.price * c.quantity), 0))
    FROM "CartItem" c JOIN "Product" p ON p.id = c."productId"
    WHERE c."userId" = p_user_id
$$;
COMMENT ON FUNCTION api.get_cart(text) IS 'The buyer''s cart lines with current price and availability, and the total.';
REVOKE ALL ON FUNCTION api.get_cart(text) FROM PUBLIC;
