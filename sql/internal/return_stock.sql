-- internal.return_stock: puts back the stock of the given orders, one ledger row per order and
-- product. Rows are locked in (product id, order id) order, the same order checkout locks
-- products in, so a batch of expiries and a concurrent checkout can never deadlock. The caller
-- has locked the orders and checked that they still hold stock.
-- Raises: nothing of its own. Callers: api.cancel_order, api.expire_pending_orders.
CREATE OR REPLACE FUNCTION internal.return_stock(p_order_ids text[], p_reasons text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_line record;
BEGIN
    FOR v_line IN
        SELECT i."productId" AS pid, i."orderId" AS oid, sum(i.quantity)::integer AS qty, r.reason
        FROM unnest(p_order_ids, p_reasons) AS r(oid, reason)
        JOIN "OrderItem" i ON i."orderId" = r.oid
        GROUP BY i."productId", i."orderId", r.reason
        ORDER BY i."productId", i."orderId"
    LOOP
        PERFORM set_config('mk.stock_reason', v_line.reason, true), set_config('mk.order_id', v_line.oid, true);
        UPDATE "Product" p SET stock = p.stock + v_line.qty WHERE p.id = v_line.pid;
    END LOOP;
    PERFORM set_config('mk.stock_reason', '', true), set_config('mk.order_id', '', true);
END
$$;
COMMENT ON FUNCTION internal.return_stock(text[], text[]) IS
    'Returns the stock of locked orders to their products, in product-id order, with one ledger row per order and product.';
REVOKE ALL ON FUNCTION internal.return_stock(text[], text[]) FROM PUBLIC;
