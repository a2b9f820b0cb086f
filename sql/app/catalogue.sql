-- Schema app (see sql/app/auth.sql): the catalogue. Reads need no identity; a listing or an edit
-- acts for the seller (or admin) behind the token.

-- app.list_products: a page of the catalogue (api.list_products).
-- Raises: MKV00 limit outside 1..200. Callers: marketplace_app (GET /api/marketplace/products).
CREATE OR REPLACE FUNCTION app.list_products(p_limit integer DEFAULT 50, p_after text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.list_products(p_limit, p_after)
$$;
COMMENT ON FUNCTION app.list_products(integer, text) IS 'A page of products in id order after a cursor: {items, next}.';
REVOKE ALL ON FUNCTION app.list_products(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.list_products(integer, text) TO marketplace_app;

-- app.get_product: one product (api.get_product).
-- Raises: MK404. Callers: marketplace_app (GET /api/marketplace/products/{id}).
CREATE OR REPLACE FUNCTION app.get_product(p_product_id text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.get_product(p_product_id)
$$;
COMMENT ON FUNCTION app.get_product(text) IS 'One product as JSON; MK404 when absent.';
REVOKE ALL ON FUNCTION app.get_product(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.get_product(text) TO marketplace_app;

-- app.create_product: the token's SELLER (or ADMIN) lists a product.
-- Raises: MK401, MK403 not a seller; what api.create_product raises (MK503, MKV00).
-- Callers: marketplace_app (POST /api/marketplace/products).
CREATE OR REPLACE FUNCTION app.create_product(
    p_token_hash text,
    p_name text,
    p_price numeric,
    p_stock integer,
    p_description text DEFAULT '',
    p_max_per_buyer integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.create_product(api.authenticate(p_token_hash, 'SELLER'), p_name, p_price, p_stock,
                              coalesce(p_description, ''), p_max_per_buyer)
$$;
COMMENT ON FUNCTION app.create_product(text, text, numeric, integer, text, integer) IS
    'The token''s seller lists a product (optionally with maxPerBuyer).';
REVOKE ALL ON FUNCTION app.create_product(text, text, numeric, integer, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.create_product(text, text, numeric, integer, text, integer) TO marketplace_app;

-- app.update_product: the token's seller (of this product) or an admin edits it under its version.
-- Raises: MK401; MK403 not its seller; what api.update_product raises (MK503, MKV00, MK404,
--         MK409 stale version, MK400).
-- Callers: marketplace_app (PATCH /api/marketplace/products/{id}).
CREATE OR REPLACE FUNCTION app.update_product(
    p_token_hash text,
    p_product_id text,
    p_expected_version integer,
    p_changes jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.update_product(p_product_id, p_expected_version, p_changes,
                              api.authenticate(p_token_hash, 'SELLER'))
$$;
COMMENT ON FUNCTION app.update_product(text, text, integer, jsonb) IS
    'The token''s seller (or an admin) edits a product if expected_version is current (MK409 otherwise).';
REVOKE ALL ON FUNCTION app.update_product(text, text, integer, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.update_product(text, text, integer, jsonb) TO marketplace_app;
