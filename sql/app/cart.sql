-- Schema app (see sql/app/auth.sql): the cart of the user behind the token.

-- app.get_cart: the caller's cart. Raises: MK401. Callers: marketplace_app (GET .../cart).
CREATE OR REPLACE FUNCTION app.get_cart(p_token_hash text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.get_cart(api.authenticate(p_token_hash))
$$;
COMMENT ON FUNCTION app.get_cart(text) IS 'The caller''s cart with current prices and availability.';
REVOKE ALL ON FUNCTION app.get_cart(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.get_cart(text) TO marketplace_app;

-- app.add_to_cart: adds to the caller's cart.
-- Raises: MK401; what api.add_to_cart raises (MK503, MKV00, MK404, MKQ09).
-- Callers: marketplace_app (POST .../cart/items).
CREATE OR REPLACE FUNCTION app.add_to_cart(p_token_hash text, p_product_id text, p_quantity integer)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.add_to_cart(api.authenticate(p_token_hash), p_product_id, p_quantity)
$$;
COMMENT ON FUNCTION app.add_to_cart(text, text, integer) IS 'Adds a line to the caller''s cart or raises its quantity.';
REVOKE ALL ON FUNCTION app.add_to_cart(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.add_to_cart(text, text, integer) TO marketplace_app;

-- app.set_cart_quantity: sets a line of the caller's cart.
-- Raises: MK401; MK503, MKV00, MK404, MKQ09 (api.set_cart_quantity). Callers: marketplace_app.
CREATE OR REPLACE FUNCTION app.set_cart_quantity(p_token_hash text, p_product_id text, p_quantity integer)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.set_cart_quantity(api.authenticate(p_token_hash), p_product_id, p_quantity)
$$;
COMMENT ON FUNCTION app.set_cart_quantity(text, text, integer) IS 'Sets the quantity of a line of the caller''s cart.';
REVOKE ALL ON FUNCTION app.set_cart_quantity(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.set_cart_quantity(text, text, integer) TO marketplace_app;

-- app.remove_from_cart: removes a line of the caller's cart.
-- Raises: MK401; MK503, MK404 (api.remove_from_cart). Callers: marketplace_app.
CREATE OR REPLACE FUNCTION app.remove_from_cart(p_token_hash text, p_product_id text)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.remove_from_cart(api.authenticate(p_token_hash), p_product_id)
$$;
COMMENT ON FUNCTION app.remove_from_cart(text, text) IS 'Removes a line from the caller''s cart.';
REVOKE ALL ON FUNCTION app.remove_from_cart(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.remove_from_cart(text, text) TO marketplace_app;
