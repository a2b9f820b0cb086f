-- Schema app (see sql/app/auth.sql): checkout and the orders of the user behind the token.

-- app.checkout: checks out the caller's cart (internal.checkout, as api.checkout does) unless the
-- caller already holds max_unpaid_orders unpaid orders (internal.settings, default 3; NULL: no
-- limit): then nothing is created and the cart stays. A replay of an idempotency key the caller
-- already used is never refused, so a retried checkout always gets its original order. The
-- caller's checkouts take a per-buyer advisory lock (before any product's queue, so the lock order
-- stays acyclic), so two at once cannot both slip under the limit. A checkout of the smoke test's
-- account (internal.smoke_account) answers with "smoke": true, so the app counts it apart (outcome
-- smoke). Every sale runs this: the switches, the smoke flag and the replay test come from one
-- query.
-- Raises: MK401; MKU09 too many unpaid orders (DETAIL: unpaidOrders, maxUnpaidOrders); MK503
--         maintenance; what internal.checkout raises (MKV00, MKI22, MKE00, MK400, MKQ09).
-- Callers: marketplace_app (POST /api/marketplace/checkout).
CREATE OR REPLACE FUNCTION app.checkout(
    p_token_hash text,
    p_shipping_address jsonb,
    p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user   text := api.authenticate(p_token_hash);
    v_now    record;
    v_unpaid integer;
BEGIN
    -- Looked up before internal.checkout: what runs after it holds the products' row locks.
    SELECT s.maintenance, s.max_unpaid_orders AS max_unpaid,
           EXISTS (SELECT 1 FROM internal.smoke_account a WHERE a.user_id = v_user) AS smoke,
           p_idempotency_key IS NOT NULL AND EXISTS (
               SELECT 1 FROM "Order" o WHERE o."userId" = v_user AND o."idempotencyKey" = p_idempotency_key) AS known
    INTO v_now
    FROM internal.settings s;
    IF v_now.max_unpaid IS NOT NULL AND NOT v_now.known THEN
        PERFORM pg_advisory_xact_lock(1296782163, hashtext(v_user));
        -- The status test is a FILTER, not a WHERE clause: as a WHERE clause it lets the planner
        -- pick the expiry job's partial index of all unpaid orders, which statistics taken while
        -- few orders were unpaid make look cheapest, and every checkout then reads every unpaid
        -- order in the shop. The buyer's own index is the only one this query can use.
        SELECT count(*) FILTER (WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')) INTO v_unpaid
        FROM "Order" o
        WHERE o."userId" = v_user;
        IF v_unpaid >= v_now.max_unpaid THEN
            RAISE EXCEPTION USING ERRCODE = 'MKU09',
                MESSAGE = format('you already hold %s unpaid orders; pay or cancel one first', v_unpaid),
                DETAIL = jsonb_build_object('unpaidOrders', v_unpaid, 'maxUnpaidOrders', v_now.max_unpaid)::text,
                HINT = 'Pay an unpaid order, or cancel it with POST /api/marketplace/orders/{id}/cancel.';
        END IF;
    END IF;
    IF v_now.maintenance THEN
        PERFORM internal.assert_writable();  -- raises MK503 with its DETAIL
    END IF;
    IF v_now.smoke THEN
        RETURN internal.checkout(v_user, p_shipping_address, p_idempotency_key) || '{"smoke": true}'::jsonb;
    END IF;
    RETURN internal.checkout(v_user, p_shipping_address, p_idempotency_key);
END
$$;
COMMENT ON FUNCTION app.checkout(text, jsonb, text) IS
    'Checks out the caller''s cart into one PENDING_PAYMENT order (MKU09 beyond max_unpaid_orders unpaid orders).';
REVOKE ALL ON FUNCTION app.checkout(text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.checkout(text, jsonb, text) TO marketplace_app;

-- app.list_orders: the caller's orders, newest first.
-- Raises: MK401; MKV00 limit outside 1..200. Callers: marketplace_app (GET .../orders).
CREATE OR REPLACE FUNCTION app.list_orders(p_token_hash text, p_limit integer DEFAULT 50)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.list_orders(api.authenticate(p_token_hash), p_limit)
$$;
COMMENT ON FUNCTION app.list_orders(text, integer) IS 'The caller''s orders, newest first, with items.';
REVOKE ALL ON FUNCTION app.list_orders(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.list_orders(text, integer) TO marketplace_app;

-- app.get_order: one of the caller's orders (another user's order is not found).
-- Raises: MK401; MK404. Callers: marketplace_app (GET .../orders/{id}).
CREATE OR REPLACE FUNCTION app.get_order(p_token_hash text, p_order_id text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.get_order(p_order_id, api.authenticate(p_token_hash))
$$;
COMMENT ON FUNCTION app.get_order(text, text) IS 'One of the caller''s orders; MK404 when absent or another user''s.';
REVOKE ALL ON FUNCTION app.get_order(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.get_order(text, text) TO marketplace_app;

-- app.cancel_order: cancels one of the caller's orders (an admin: any order) and returns its stock.
-- Raises: MK401; what api.cancel_order raises (MK503, MK404, MKS09).
-- Callers: marketplace_app (POST .../orders/{id}/cancel).
CREATE OR REPLACE FUNCTION app.cancel_order(p_token_hash text, p_order_id text)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT api.cancel_order(p_order_id, api.authenticate(p_token_hash))
$$;
COMMENT ON FUNCTION app.cancel_order(text, text) IS 'Cancels one of the caller''s not-yet-shipped orders and returns its stock.';
REVOKE ALL ON FUNCTION app.cancel_order(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.cancel_order(text, text) TO marketplace_app;
