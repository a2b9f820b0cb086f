-- internal.return_stock: puts back the stock of the given orders: one UPDATE per product, whatever
-- the number of orders, with one ledger row per order and product (written by the ledger trigger
-- from mk.stock_split, see internal.product_stock_ledger). Products are locked in id order, the
-- order checkout locks them in, so a batch of expiries and a concurrent checkout can never
-- deadlock. Each product's row stays locked until the caller commits, so this runs last in the
-- caller's transaction and does as little as it can: a batch of 1,000 orders over 100 products is
-- 100 updates, not 1,000. The caller has locked the orders and checked that they still hold stock.
-- Raises: nothing of its own. Callers: api.cancel_order, api.expire_pending_orders.
CREATE OR REPLACE FUNCTION internal.return_stock(p_order_ids text[], p_reasons text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_product record;
BEGIN
    FOR v_product IN
        SELECT l.pid, sum(l.qty)::integer AS qty,
               jsonb_build_object('p', l.pid,
                                  'rows', jsonb_agg(jsonb_build_array(l.oid, l.qty, l.reason) ORDER BY l.oid)) AS split
        FROM (SELECT i."productId" AS pid, i."orderId" AS oid, sum(i.quantity)::integer AS qty, r.reason
              FROM unnest(p_order_ids, p_reasons) AS r(oid, reason)
              JOIN "OrderItem" i ON i."orderId" = r.oid
              GROUP BY i."productId", i."orderId", r.reason) l
        GROUP BY l.pid
        ORDER BY l.pid
    LOOP
        PERFORM set_config('mk.stock_split', v_product.split::text, true);
        UPDATE "Product" p SET stock = p.stock + v_product.qty WHERE p.id = v_product.pid;
    END LOOP;
    PERFORM set_config('mk.stock_split', '', true);
END
$$;
COMMENT ON FUNCTION internal.return_stock(text[], text[]) IS
    'Returns the stock of locked orders to their products, one update per product in id order, with one ledger row per order and product.';
REVOKE ALL ON FUNCTION internal.return_stock(text[], text[]) FROM PUBLIC;
