-- internal.product_json: the public JSON shape of one product row (used by every product function);
-- maxPerBuyer is null when the product has no per-buyer cap.
-- Raises: nothing. Callers: api functions only.
CREATE OR REPLACE FUNCTION internal.product_json(p "Product")
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'name', p.name, 'description', p.description, 'price', p.price,
        'stock', p.stock, 'version', p."version", 'sellerId', p."sellerId",
        'maxPerBuyer', p."maxPerBuyer", 'createdAt', p."createdAt", 'updatedAt', p."updatedAt")
$$;
COMMENT ON FUNCTION internal.product_json("Product") IS 'The public JSON shape of a product.';
REVOKE ALL ON FUNCTION internal.product_json("Product") FROM PUBLIC;

-- internal.order_json: the public JSON shape of one order with its items, or NULL when absent.
-- Raises: nothing. Callers: api functions only.
CREATE OR REPLACE FUNCTION internal.order_json(p_order_id text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', o.id, 'userId', o."userId", 'status', o.status, 'total', o.total,
        'shippingAddress', o."shippingAddress", 'idempotencyKey', o."idempotencyKey",
        'paymentReference', o."paymentReference", 'createdAt', o."createdAt",
        'updatedAt', o."updatedAt", 'paidAt', o."paidAt", 'cancelledAt', o."cancelledAt",
        'cancelReason', o."cancelReason",
        'items', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'productId', i."productId", 'quantity', i.quantity, 'unitPrice', i."unitPrice")
                   ORDER BY i."productId")
            FROM "OrderItem" i WHERE i."orderId" = o.id), '[]'::jsonb))
    FROM "Order" o
    WHERE o.id = p_order_id
$$;
COMMENT ON FUNCTION internal.order_json(text) IS 'The public JSON shape of an order and its items.';
REVOKE ALL ON FUNCTION internal.order_json(text) FROM PUBLIC;
