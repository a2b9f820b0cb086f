-- internal.assert_max_per_buyer: refuses a quantity of a capped product that, with the units the
-- buyer already holds in unpaid (PENDING_PAYMENT, PAYMENT_FAILED) orders, would exceed the
-- product's maxPerBuyer. Takes parallel arrays (product, quantity wanted, its cap) so that checkout
-- checks a whole cart in one query; a product whose cap is NULL is not checked. The first product
-- over its cap, in id order, is reported: the one place MKQ09 is raised, so its DETAIL is the same
-- everywhere. The status test is a FILTER so that only the buyer's index fits the query (see
-- app.checkout), and the items are found by order id, never by product.
-- Raises: MKQ09 (DETAIL: productId, maxPerBuyer, requested, held).
-- Callers: api.add_to_cart, api.set_cart_quantity, internal.checkout.
CREATE OR REPLACE FUNCTION internal.assert_max_per_buyer(
    p_user_id text,
    p_product_ids text[],
    p_quantities integer[],
    p_caps integer[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_orders text[];
    v_over   record;
BEGIN
    -- The buyer's unpaid orders first, then their items by order: the two steps keep the
    -- planner on the buyer's own rows. Asked in one join, it may start from every item of a
    -- popular product (a limited edition sold to thousands) when the statistics are old.
    SELECT array_agg(o.id) FILTER (WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')) INTO v_orders
    FROM "Order" o WHERE o."userId" = p_user_id;
    SELECT c.pid, c.qty, c.cap, coalesce(h.held, 0) AS held INTO v_over
    FROM unnest(p_product_ids, p_quantities, p_caps) AS c(pid, qty, cap)
    LEFT JOIN (SELECT i."productId" AS pid, sum(i.quantity) AS held
               FROM "OrderItem" i WHERE i."orderId" = ANY (v_orders)
               GROUP BY i."productId") h ON h.pid = c.pid
    WHERE c.cap IS NOT NULL AND c.qty + coalesce(h.held, 0) > c.cap
    ORDER BY c.pid
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MKQ09',
            MESSAGE = format('product %s allows at most %s units per buyer: %s requested, %s already held in unpaid orders',
                             v_over.pid, v_over.cap, v_over.qty, v_over.held),
            DETAIL = jsonb_build_object('productId', v_over.pid, 'maxPerBuyer', v_over.cap,
                                        'requested', v_over.qty, 'held', v_over.held)::text,
            HINT = 'Lower the quantity, or pay for or cancel the unpaid orders that hold this product.';
    END IF;
END
$$;
COMMENT ON FUNCTION internal.assert_max_per_buyer(text, text[], integer[], integer[]) IS
    'Raises MKQ09 when a wanted quantity plus the buyer''s unpaid units of a product exceeds its maxPerBuyer.';
REVOKE ALL ON FUNCTION internal.assert_max_per_buyer(text, text[], integer[], integer[]) FROM PUBLIC;
