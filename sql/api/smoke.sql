-- api.smoke_prepare: the fixture of `python -m pyapp smoke`, made on first use and reused after:
-- an account recorded in internal.smoke_account and its product. The account is a SELLER (so it
-- can own its product) whose password hash matches no password: nobody logs in as it, and the
-- smoke command acts as it only with a short-lived token the owner mints (api.issue_token). The
-- product is unlisted (api.list_products leaves it out; it stays readable by id), costs 1.00, has
-- maxPerBuyer 1 (a buyer who finds it can hold one unit, not the lot) and 1000 units, topped up
-- to 1000 when fewer than 10 are left. 1000 is far below the stock bound (1,000,000,000), so
-- returning a smoke order's unit, by cancel or by expiry, can never fail. The account's orders
-- are left out of api.checkout_report, api.evaluate_alerts, api.ops_snapshot and
-- api.dashboard_stats; app.checkout marks its checkouts with "smoke": true.
-- Each call also leaves the account as a run expects it: its cart emptied, and every order an
-- interrupted run left open cancelled (its stock returned, "cancelReason" SMOKE_CLEANUP).
-- Returns {userId, productId, price, stock, created, cleanedUp}.
-- Raises: MK503 maintenance (a smoke run writes). Callers: `python -m pyapp smoke` (as the owner),
-- DBAs.
CREATE OR REPLACE FUNCTION api.smoke_prepare()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user    text;
    v_product text;
    v_created boolean := false;
    v_cleaned integer := 0;
    v_order   text;
    v_row     "Product";
BEGIN
    PERFORM internal.assert_writable();
    -- One fixture however many runs start at once.
    PERFORM pg_advisory_xact_lock(hashtext('internal.smoke_account'));
    SELECT s.user_id, s.product_id INTO v_user, v_product
    FROM internal.smoke_account s ORDER BY s.created_at, s.user_id LIMIT 1;
    IF NOT FOUND THEN
        INSERT INTO "User" (email, name, role, "passwordHash")
        VALUES ('smoke-' || gen_random_uuid() || '@smoke.invalid', 'Smoke test account (python -m pyapp smoke)',
                'SELLER', '!no password: acts only through tokens the owner issues')
        RETURNING id INTO v_user;
        v_product := api.create_product(v_user, 'Smoke test product (unlisted; not for sale)', 1.00, 1000,
                                        'Bought and cancelled by python -m pyapp smoke.', 1) ->> 'id';
        INSERT INTO internal.smoke_account (user_id, product_id) VALUES (v_user, v_product);
        v_created := true;
    END IF;

    DELETE FROM "CartItem" c WHERE c."userId" = v_user;
    FOR v_order IN
        SELECT o.id FROM "Order" o
        WHERE o."userId" = v_user AND o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED', 'PAID')
        ORDER BY o.id
    LOOP
        PERFORM api.cancel_order(v_order, NULL, 'SMOKE_CLEANUP');
        v_cleaned := v_cleaned + 1;
    END LOOP;

    SELECT * INTO v_row FROM "Product" p WHERE p.id = v_product FOR UPDATE;
    IF v_row.stock < 10 THEN
        PERFORM set_config('mk.stock_reason', 'RESTOCK', true);
        UPDATE "Product" p SET stock = 1000 WHERE p.id = v_product RETURNING * INTO v_row;
        PERFORM set_config('mk.stock_reason', '', true);
    END IF;
    RETURN jsonb_build_object('userId', v_user, 'productId', v_product, 'price', v_row.price,
                              'stock', v_row.stock, 'created', v_created, 'cleanedUp', v_cleaned);
END
$$;
COMMENT ON FUNCTION api.smoke_prepare() IS
    'The smoke test''s account and unlisted product (made once), its cart emptied and leftover orders cancelled; returns their ids and the stock.';
REVOKE ALL ON FUNCTION api.smoke_prepare() FROM PUBLIC;
