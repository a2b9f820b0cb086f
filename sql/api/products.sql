-- api.create_product: a seller (or admin) lists a new product; its initial stock opens the ledger.
-- p_max_per_buyer caps the units one buyer may hold in unpaid orders or buy in one order (NULL: no
-- cap; see api.add_to_cart and api.checkout).
-- Raises: MK503 maintenance; MKV00 bad name, price, stock or maxPerBuyer; MK404 unknown seller;
--         MK403 the seller is a BUYER.
-- Callers: app.create_product (HTTP), the demo loader, DBAs.
CREATE OR REPLACE FUNCTION api.create_product(
    p_seller_id text,
    p_name text,
    p_price numeric,
    p_stock integer,
    p_description text DEFAULT '',
    p_max_per_buyer integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_role text;
    v_row  "Product";
BEGIN
    PERFORM internal.assert_writable();
    SELECT u.role INTO v_role FROM "User" u WHERE u.id = p_seller_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'seller not found',
            DETAIL = jsonb_build_object('sellerId', p_seller_id)::text;
    END IF;
    IF v_role NOT IN ('SELLER', 'ADMIN') THEN
        RAISE EXCEPTION USING ERRCODE = 'MK403', MESSAGE = 'only sellers and admins may list products',
            DETAIL = jsonb_build_object('role', v_role)::text;
    END IF;
    -- jsonb_strip_nulls: a NULL maxPerBuyer is absent (no cap), not a JSON null to refuse.
    PERFORM internal.json_text(jsonb_build_object('name', p_name), 'name', 1, 200),
            internal.json_text(jsonb_build_object('description', coalesce(p_description, '')), 'description', 0, 5000),
            internal.json_number(jsonb_build_object('price', p_price), 'price', 0, 99999999.99, false),
            internal.json_number(jsonb_build_object('stock', p_stock), 'stock', 0, 1000000000, true),
            internal.json_number(jsonb_strip_nulls(jsonb_build_object('maxPerBuyer', p_max_per_buyer)),
                                 'maxPerBuyer', 1, 10000, true);
    INSERT INTO "Product" (name, description, price, stock, "sellerId", "maxPerBuyer")
    VALUES (btrim(p_name), btrim(coalesce(p_description, '')), p_price, p_stock, p_seller_id, p_max_per_buyer)
    RETURNING * INTO v_row;
    RETURN internal.product_json(v_row);
END
$$;
COMMENT ON FUNCTION api.create_product(text, text, numeric, integer, text, integer) IS
    'Lists a new product for a SELLER or ADMIN, optionally capped per buyer; its initial stock is the ledger''s opening balance.';
REVOKE ALL ON FUNCTION api.create_product(text, text, numeric, integer, text, integer) FROM PUBLIC;

-- api.get_product: one product as JSON (its version is the HTTP ETag).
-- Raises: MK404 unknown product. Callers: app.get_product (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.get_product(p_product_id text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_row "Product";
BEGIN
    SELECT * INTO v_row FROM "Product" p WHERE p.id = p_product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'product not found',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    RETURN internal.product_json(v_row);
END
$$;
COMMENT ON FUNCTION api.get_product(text) IS 'One product as JSON; MK404 when absent.';
REVOKE ALL ON FUNCTION api.get_product(text) FROM PUBLIC;

-- api.list_products: a page of the catalogue in id order, after the cursor p_after (keyset
-- pagination, so a page costs the same at any depth of a large catalogue). The smoke test's
-- product (internal.smoke_account) is not listed.
-- Raises: MKV00 limit outside 1..200. Callers: app.list_products (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.list_products(p_limit integer DEFAULT 50, p_after text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_items jsonb;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'limit must be between 1 and 200',
            DETAIL = jsonb_build_object('field', 'limit', 'value', p_limit)::text;
    END IF;
    SELECT coalesce(jsonb_agg(internal.product_json(p) ORDER BY p.id), '[]'::jsonb) INTO v_items
    FROM (SELECT * FROM "Product" p
          WHERE (p_after IS NULL OR p.id > p_after)
            -- The smoke test's product is unlisted: readable by id, never listed (sql/api/smoke.sql).
            AND NOT EXISTS (SELECT 1 FROM internal.smoke_account s WHERE s.product_id = p.id)
          ORDER BY p.id LIMIT p_limit) p;
    RETURN jsonb_build_object(
        'items', v_items,
        'next', CASE WHEN jsonb_array_length(v_items) = p_limit THEN v_items -> (p_limit - 1) ->> 'id' END);
END
$$;
COMMENT ON FUNCTION api.list_products(integer, text) IS
    'A page of products in id order after a cursor: {items, next}.';
REVOKE ALL ON FUNCTION api.list_products(integer, text) FROM PUBLIC;
