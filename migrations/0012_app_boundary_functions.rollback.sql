-- Rollback of 0012: drops the functions it added and restates, for each sql/ file it restates,
-- the definition of the latest earlier migration (without the GRANTs to marketplace_app that
-- 0011 revoked).

DROP FUNCTION IF EXISTS internal.assert_max_per_buyer(text, text[], integer[], integer[]);
DROP FUNCTION IF EXISTS api.create_product(text, text, numeric, integer, text, integer);
DROP FUNCTION IF EXISTS api.expiry_failures();

-- ==== sql/internal/expected_migrations.sql as of 0010_checkout_early_release ====
-- internal.expected_migrations: the yoyo migration ids this definition of the functions belongs
-- to. Each new migration restates this function with its own id added, so
-- api.integrity_report() can tell when a database lags behind its code.
-- Raises: nothing. Callers: api.integrity_report.
CREATE OR REPLACE FUNCTION internal.expected_migrations()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[
        '0001_initial_marketplace_schema',
        '0002_add_version_to_product',
        '0003_core_rules',
        '0004_api_functions',
        '0005_checkout_stats',
        '0006_login_throttle',
        '0007_checkout_uuid7_functions',
        '0008_time_ordered_ids',
        '0009_ops_input_checks',
        '0010_checkout_early_release'
    ]
$$;
COMMENT ON FUNCTION internal.expected_migrations() IS 'The migration ids the current functions expect to be applied.';
REVOKE ALL ON FUNCTION internal.expected_migrations() FROM PUBLIC;

-- ==== sql/internal/json.sql as of 0004_api_functions ====
-- internal.product_json: the public JSON shape of one product row (used by every product function).
-- Raises: nothing. Callers: api functions only.
CREATE OR REPLACE FUNCTION internal.product_json(p "Product")
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'name', p.name, 'description', p.description, 'price', p.price,
        'stock', p.stock, 'version', p."version", 'sellerId', p."sellerId",
        'createdAt', p."createdAt", 'updatedAt', p."updatedAt")
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

-- ==== sql/api/error_codes.sql as of 0004_api_functions ====
-- api.error_codes: the one registry of every SQLSTATE the project raises.
-- Each code is in the project's own class MK (the SQL standard reserves classes 0-4 and A-H,
-- PostgreSQL uses 5, P, X and Y). The HTTP app loads this table at start-up to map errors, and a
-- test checks that the README's error table says the same.
-- Raises: nothing. Callers: anyone with EXECUTE (the HTTP app, DBAs, CI).
CREATE OR REPLACE FUNCTION api.error_codes()
RETURNS TABLE (sqlstate text, code text, http_status integer, title text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
        ('MK400', 'INSUFFICIENT_STOCK',     400, 'Stock insuficiente'),
        ('MKE00', 'EMPTY_CART',             400, 'The cart is empty'),
        ('MKV00', 'INVALID_ARGUMENT',       400, 'Invalid argument'),
        ('MK401', 'UNAUTHENTICATED',        401, 'Authentication required'),
        ('MK403', 'FORBIDDEN',              403, 'Not allowed'),
        ('MK404', 'NOT_FOUND',              404, 'Not found'),
        ('MK409', 'CONCURRENCY_CONFLICT',   409, 'Concurrent modification'),
        ('MKC09', 'ALREADY_EXISTS',         409, 'Already exists'),
        ('MKS09', 'INVALID_STATE',          409, 'Not allowed in the current state'),
        ('MKI22', 'IDEMPOTENCY_KEY_REUSED', 422, 'Idempotency key reused with another payload'),
        ('MKT29', 'TOO_MANY_ATTEMPTS',      429, 'Too many attempts'),
        ('MK503', 'MAINTENANCE',            503, 'Service under maintenance')
$$;
COMMENT ON FUNCTION api.error_codes() IS
    'Registry of the project''s SQLSTATEs (class MK): code, HTTP status and title of each.';
REVOKE ALL ON FUNCTION api.error_codes() FROM PUBLIC;

-- ==== sql/api/products.sql as of 0004_api_functions ====
-- api.create_product: a seller (or admin) lists a new product; its initial stock opens the ledger.
-- Raises: MK503 maintenance; MKV00 bad name, price or stock; MK404 unknown seller;
--         MK403 the seller is a BUYER.
-- Callers: marketplace_app, DBAs.
CREATE OR REPLACE FUNCTION api.create_product(
    p_seller_id text,
    p_name text,
    p_price numeric,
    p_stock integer,
    p_description text DEFAULT '')
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
    PERFORM internal.json_text(jsonb_build_object('name', p_name), 'name', 1, 200),
            internal.json_text(jsonb_build_object('description', coalesce(p_description, '')), 'description', 0, 5000),
            internal.json_number(jsonb_build_object('price', p_price), 'price', 0, 99999999.99, false),
            internal.json_number(jsonb_build_object('stock', p_stock), 'stock', 0, 1000000000, true);
    INSERT INTO "Product" (name, description, price, stock, "sellerId")
    VALUES (btrim(p_name), btrim(coalesce(p_description, '')), p_price, p_stock, p_seller_id)
    RETURNING * INTO v_row;
    RETURN internal.product_json(v_row);
END
$$;
COMMENT ON FUNCTION api.create_product(text, text, numeric, integer, text) IS
    'Lists a new product for a SELLER or ADMIN; its initial stock is the ledger''s opening balance.';
REVOKE ALL ON FUNCTION api.create_product(text, text, numeric, integer, text) FROM PUBLIC;

-- api.get_product: one product as JSON (its version is the HTTP ETag).
-- Raises: MK404 unknown product. Callers: marketplace_app, DBAs.
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
-- pagination, so a page costs the same at any depth of a large catalogue).
-- Raises: MKV00 limit outside 1..200. Callers: marketplace_app, DBAs.
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
    FROM (SELECT * FROM "Product" p WHERE p_after IS NULL OR p.id > p_after ORDER BY p.id LIMIT p_limit) p;
    RETURN jsonb_build_object(
        'items', v_items,
        'next', CASE WHEN jsonb_array_length(v_items) = p_limit THEN v_items -> (p_limit - 1) ->> 'id' END);
END
$$;
COMMENT ON FUNCTION api.list_products(integer, text) IS
    'A page of products in id order after a cursor: {items, next}.';
REVOKE ALL ON FUNCTION api.list_products(integer, text) FROM PUBLIC;

-- ==== sql/api/update_product.sql as of 0004_api_functions ====
-- api.update_product: a seller's or admin's edit of a product, guarded by its version.
-- p_changes may hold "name", "description", "price", and either "stock" (the new absolute stock)
-- or "stockDelta" (added to the stock; a positive one is recorded as RESTOCK, a negative one as
-- ADJUSTMENT). When p_actor_id is given, it must be the product's seller or an ADMIN.
-- Raises: MK503 maintenance; MKV00 unknown or ill-typed change; MK404 unknown product;
--         MK403 actor is neither its seller nor an admin; MK409 stale p_expected_version (DETAIL
--         has currentVersion); MK400 a stock change that would go below 0.
-- Callers: marketplace_app, DBAs.
CREATE OR REPLACE FUNCTION api.update_product(
    p_product_id text,
    p_expected_version integer,
    p_changes jsonb,
    p_actor_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_row       "Product";
    v_unknown   text[];
    v_name      text;
    v_desc      text;
    v_price     numeric;
    v_stock     numeric;
BEGIN
    PERFORM internal.assert_writable();
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' OR p_changes = '{}'::jsonb THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'changes must be a non-empty JSON object',
            DETAIL = jsonb_build_object('field', 'changes')::text;
    END IF;
    SELECT array_agg(k ORDER BY k) INTO v_unknown FROM jsonb_object_keys(p_changes) AS k
    WHERE k NOT IN ('name', 'description', 'price', 'stock', 'stockDelta');
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'unknown fields: ' || array_to_string(v_unknown, ', '),
            DETAIL = jsonb_build_object('fields', v_unknown)::text,
            HINT = 'Allowed: name, description, price, stock, stockDelta.';
    END IF;
    IF p_changes ? 'stock' AND p_changes ? 'stockDelta' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'give either stock or stockDelta, not both',
            DETAIL = jsonb_build_object('fields', ARRAY['stock', 'stockDelta'])::text;
    END IF;
    v_name := internal.json_text(p_changes, 'name', 1, 200);
    v_desc := internal.json_text(p_changes, 'description', 0, 5000);
    v_price := internal.json_number(p_changes, 'price', 0, 99999999.99, false);
    v_stock := coalesce(internal.json_number(p_changes, 'stock', 0, 1000000000, true),
                        internal.json_number(p_changes, 'stockDelta', -1000000000, 1000000000, true));
    IF p_expected_version IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'expected version is required',
            DETAIL = jsonb_build_object('field', 'version')::text;
    END IF;

    SELECT * INTO v_row FROM "Product" p WHERE p.id = p_product_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'product not found',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    IF p_actor_id IS NOT NULL AND p_actor_id IS DISTINCT FROM v_row."sellerId"
       AND NOT EXISTS (SELECT 1 FROM "User" u WHERE u.id = p_actor_id AND u.role = 'ADMIN') THEN
        RAISE EXCEPTION USING ERRCODE = 'MK403', MESSAGE = 'only the product''s seller or an admin may edit it',
            DETAIL = jsonb_build_object('productId', p_product_id)::text;
    END IF;
    IF v_row."version" <> p_expected_version THEN
        RAISE EXCEPTION USING ERRCODE = 'MK409',
            MESSAGE = format('product %s changed: expected version %s, current version %s',
                             p_product_id, p_expected_version, v_row."version"),
            DETAIL = jsonb_build_object('productId', p_product_id, 'expectedVersion', p_expected_version,
                                        'currentVersion', v_row."version", 'retryable', false,
                                        'current', internal.product_json(v_row))::text,
            HINT = 'Read the product again and apply the change to its current version.';
    END IF;

    IF p_changes ? 'stockDelta' THEN
        v_stock := v_row.stock + v_stock;
    END IF;
    IF v_stock < 0 THEN
        PERFORM internal.raise_insufficient_stock(jsonb_build_array(jsonb_build_object(
            'productId', p_product_id, 'requested', v_row.stock - v_stock, 'available', v_row.stock)));
    END IF;
    IF v_stock IS NOT NULL AND v_stock > 2147483647 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'stock would exceed the integer range',
            DETAIL = jsonb_build_object('field', 'stock')::text;
    END IF;
    PERFORM set_config('mk.stock_reason',
                       CASE WHEN v_stock > v_row.stock THEN 'RESTOCK' ELSE 'ADJUSTMENT' END, true),
            set_config('mk.order_id', '', true);

    UPDATE "Product" p SET
        name = coalesce(v_name, p.name),
        description = coalesce(v_desc, p.description),
        price = coalesce(v_price, p.price),
        stock = coalesce(v_stock::integer, p.stock)
    WHERE p.id = p_product_id
    RETURNING * INTO v_row;
    PERFORM set_config('mk.stock_reason', '', true);
    RETURN internal.product_json(v_row);
END
$$;
COMMENT ON FUNCTION api.update_product(text, integer, jsonb, text) IS
    'Edits a product (name, description, price, stock or stockDelta) if expected_version is still current (MK409 otherwise).';
REVOKE ALL ON FUNCTION api.update_product(text, integer, jsonb, text) FROM PUBLIC;

-- ==== sql/api/cart.sql as of 0004_api_functions ====
-- api.add_to_cart: adds a cart line or raises its quantity. It reserves nothing: a cart may ask for
-- more than is in stock, and checkout decides. Returns the line.
-- Raises: MK503 maintenance; MKV00 quantity outside 1..10000 (also for the line's new total);
--         MK404 unknown user or product.
-- Callers: marketplace_app, DBAs.
CREATE OR REPLACE FUNCTION api.add_to_cart(p_user_id text, p_product_id text, p_quantity integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_qty        integer;
    v_user_ok    boolean;
    v_product_ok boolean;
BEGIN
    PERFORM internal.assert_writable();
    IF p_quantity IS NULL OR p_quantity NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'quantity must be between 1 and 10000',
            DETAIL = jsonb_build_object('field', 'quantity', 'value', p_quantity)::text;
    END IF;
    -- "CartItem" has no foreign key to "Product" (see migration 0003): look for it here.
    SELECT EXISTS (SELECT 1 FROM "User" u WHERE u.id = p_user_id),
           EXISTS (SELECT 1 FROM "Product" p WHERE p.id = p_product_id)
    INTO v_user_ok, v_product_ok;
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
    RETURN jsonb_build_object('productId', p_product_id, 'quantity', v_qty);
END
$$;
COMMENT ON FUNCTION api.add_to_cart(text, text, integer) IS
    'Adds a cart line or raises its quantity; reserves no stock (checkout decides).';
REVOKE ALL ON FUNCTION api.add_to_cart(text, text, integer) FROM PUBLIC;

-- api.set_cart_quantity: sets the quantity of an existing cart line.
-- Raises: MK503 maintenance; MKV00 quantity outside 1..10000; MK404 no such line.
-- Callers: marketplace_app, DBAs.
CREATE OR REPLACE FUNCTION api.set_cart_quantity(p_user_id text, p_product_id text, p_quantity integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
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
    RETURN jsonb_build_object('productId', p_product_id, 'quantity', p_quantity);
END
$$;
COMMENT ON FUNCTION api.set_cart_quantity(text, text, integer) IS 'Sets the quantity of an existing cart line.';
REVOKE ALL ON FUNCTION api.set_cart_quantity(text, text, integer) FROM PUBLIC;

-- api.remove_from_cart: removes one cart line.
-- Raises: MK503 maintenance; MK404 no such line. Callers: marketplace_app, DBAs.
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
-- Raises: nothing. Callers: marketplace_app, DBAs.
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

-- ==== sql/api/checkout.sql as of 0010_checkout_early_release ====
-- api.checkout: turns the buyer's whole cart into one PENDING_PAYMENT order, atomically.
-- The cart is claimed with DELETE ... RETURNING, so two concurrent checkouts of one cart can never
-- both get its lines (the second finds it empty). Quantities are summed per product and products
-- are locked in id order, so two carts can never deadlock. Each decrement is conditional
-- (stock >= quantity) and re-checked by PostgreSQL on the newest row version, so a busy product
-- never yields a spurious conflict. The order and its items are written first and the hot-row
-- UPDATEs come last: a product's row lock is held until commit, and that is what bounds
-- throughput on a popular product. Prices are copied from the rows sold. With an idempotency
-- key, the same key and payload return the original order (with "replayed": true) and create
-- nothing. A caller that set mk.release_early = 'on' may get a commit that does not wait for the
-- disk when the checkout had to queue for a product (it then finds mk.flush_pending = 'on').
-- Raises: MK503 maintenance; MKV00 bad address or key; MKI22 key reused with another payload;
--         MK404 unknown user; MKE00 empty cart; MK400 insufficient stock (DETAIL lists every
--         short product with requested and available).
-- Callers: marketplace_app (HTTP), DBAs.
CREATE OR REPLACE FUNCTION api.checkout(
    p_user_id text,
    p_shipping_address jsonb,
    p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_hash      text;
    v_pids      text[];
    v_qtys      integer[];
    v_prices    numeric(10,2)[];
    v_price     numeric(10,2);
    v_total     numeric;
    v_short     jsonb;
    v_items     jsonb;
    v_order_id  text;
    v_at        timestamptz := now();
    v_repriced  boolean := false;
    v_queued    boolean := false;
    v_key       integer;
    v_result    jsonb;
    i           integer;
BEGIN
    PERFORM internal.assert_writable();

    IF p_shipping_address IS NULL OR jsonb_typeof(p_shipping_address) <> 'object'
       OR p_shipping_address = '{}'::jsonb OR length(p_shipping_address::text) > 4096 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00',
            MESSAGE = 'shipping address must be a non-empty JSON object of at most 4096 bytes',
            DETAIL = jsonb_build_object('field', 'shippingAddress')::text;
    END IF;
    IF p_idempotency_key IS NOT NULL AND (length(p_idempotency_key) NOT BETWEEN 1 AND 255) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00',
            MESSAGE = 'idempotency key must be 1 to 255 characters',
            DETAIL = jsonb_build_object('field', 'idempotencyKey')::text;
    END IF;

    -- jsonb's text form is canonical (key order, whitespace), so equal payloads hash equally.
    v_hash := md5(p_shipping_address::text);
    IF p_idempotency_key IS NOT NULL THEN
        v_result := internal.checkout_replay(p_user_id, p_idempotency_key, v_hash);
        IF v_result IS NOT NULL THEN
            RETURN v_result;
        END IF;
    END IF;

    -- Claim the cart (a concurrent checkout of the same cart waits here, then finds it empty) and
    -- take a lock-free look at stock and prices: a sold-out product fails here without queueing
    -- on its row lock, and the prices read are the ones the order is written with.
    WITH claimed AS (
        DELETE FROM "CartItem" c WHERE c."userId" = p_user_id
        RETURNING c."productId", c.quantity
    ), summed AS (
        SELECT "productId" AS pid, sum(quantity)::integer AS qty FROM claimed GROUP BY 1
    )
    SELECT array_agg(s.pid ORDER BY s.pid), array_agg(s.qty ORDER BY s.pid),
           array_agg(p.price ORDER BY s.pid), sum(p.price * s.qty),
           jsonb_agg(jsonb_build_object('productId', s.pid, 'quantity', s.qty,
                                        'unitPrice', p.price) ORDER BY s.pid),
           jsonb_agg(jsonb_build_object('productId', s.pid, 'requested', s.qty,
                                        'available', coalesce(p.stock, 0)) ORDER BY s.pid)
               FILTER (WHERE coalesce(p.stock, 0) < s.qty)
    INTO v_pids, v_qtys, v_prices, v_total, v_items, v_short
    FROM summed s LEFT JOIN "Product" p ON p.id = s.pid;

    IF v_pids IS NULL THEN
        -- A twin with the same key that held the cart has just committed: its order is visible now.
        IF p_idempotency_key IS NOT NULL THEN
            v_result := internal.checkout_replay(p_user_id, p_idempotency_key, v_hash);
            IF v_result IS NOT NULL THEN
                RETURN v_result;
            END IF;
        END IF;
        PERFORM 1 FROM "User" u WHERE u.id = p_user_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'user not found',
                DETAIL = jsonb_build_object('userId', p_user_id)::text;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'MKE00', MESSAGE = 'the cart is empty',
            DETAIL = jsonb_build_object('userId', p_user_id)::text,
            HINT = 'Add items with api.add_to_cart first.';
    END IF;
    IF v_short IS NOT NULL THEN
        PERFORM internal.raise_insufficient_stock(v_short);
    END IF;
    IF v_total > 99999999.99 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'order total exceeds 99,999,999.99',
            DETAIL = jsonb_build_object('total', v_total)::text,
            HINT = 'Split the order.';
    END IF;

    -- The order is written before any product row is locked: the lock is held until commit, so
    -- whatever runs after the first UPDATE below delays every other buyer of that product.
    v_order_id := internal.uuid7()::text;
    WITH o AS (
        INSERT INTO "Order" (id, "userId", status, total, "shippingAddress", "idempotencyKey",
                             "requestHash", "createdAt", "updatedAt")
        VALUES (v_order_id, p_user_id, 'PENDING_PAYMENT', v_total, p_shipping_address,
                p_idempotency_key, v_hash, v_at, v_at)
        RETURNING id
    )
    INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice")
    SELECT o.id, u.pid, u.qty, u.price FROM o, unnest(v_pids, v_qtys, v_prices) AS u(pid, qty, price);
    v_result := internal.checkout_result(v_order_id, p_user_id, v_total, p_shipping_address,
                                         p_idempotency_key, v_at, v_items);

    -- Join each product's sale queue: a transaction-scoped advisory lock per product, keyed by
    -- (1296782161, hashtext(id)), taken in key order. Buyers of one product then wait in a FIFO
    -- queue and each commit wakes only the next one; waiting on the row lock itself instead, every
    -- commit wakes all of them to fight over the row (measured on one hot product: about 15 %
    -- more sales per second with the queue). Key order makes the queues deadlock-free even when
    -- two products share a key; a checkout holding all its keys has no other checkout to meet on
    -- its rows. Writers that skip the queue (DBAs, restocks) just meet the queue's head on the row.
    -- A key that is not free at once means another buyer of the product is selling now: the
    -- checkout queues, and notes that it did (see the early release below).
    IF array_length(v_pids, 1) = 1 THEN
        v_key := hashtext(v_pids[1]);
        IF NOT pg_try_advisory_xact_lock(1296782161, v_key) THEN
            v_queued := true;
            PERFORM pg_advisory_xact_lock(1296782161, v_key);
        END IF;
    ELSE
        FOR v_key IN SELECT DISTINCT hashtext(u.pid) FROM unnest(v_pids) AS u(pid) ORDER BY 1 LOOP
            IF NOT pg_try_advisory_xact_lock(1296782161, v_key) THEN
                v_queued := true;
                PERFORM pg_advisory_xact_lock(1296782161, v_key);
            END IF;
        END LOOP;
    END IF;

    -- Hot-row work last, in id order. A row that fails the condition was sold in the meantime.
    PERFORM set_config('mk.stock_reason', 'CHECKOUT', true), set_config('mk.order_id', v_order_id, true);
    FOR i IN 1 .. array_length(v_pids, 1) LOOP
        UPDATE "Product" p SET stock = p.stock - v_qtys[i]
        WHERE p.id = v_pids[i] AND p.stock >= v_qtys[i]
        RETURNING p.price INTO v_price;
        IF NOT FOUND THEN
            SELECT jsonb_agg(jsonb_build_object('productId', c.pid, 'requested', c.qty,
                                                'available', coalesce(p.stock, 0)) ORDER BY c.pid)
            INTO v_short
            FROM unnest(v_pids[i:], v_qtys[i:]) AS c(pid, qty)
            LEFT JOIN "Product" p ON p.id = c.pid
            WHERE c.pid = v_pids[i] OR coalesce(p.stock, 0) < c.qty;
            PERFORM internal.raise_insufficient_stock(v_short);
        END IF;
        IF v_price <> v_prices[i] THEN
            -- The price changed since the look above: the buyer pays the price of the row sold.
            v_repriced := true;
            v_prices[i] := v_price;
        END IF;
    END LOOP;
    IF v_repriced THEN
        SELECT sum(u.price * u.qty),
               jsonb_agg(jsonb_build_object('productId', u.pid, 'quantity', u.qty, 'unitPrice', u.price)
                         ORDER BY u.pid)
        INTO v_total, v_items
        FROM unnest(v_pids, v_qtys, v_prices) AS u(pid, qty, price);
        UPDATE "OrderItem" i SET "unitPrice" = u.price
        FROM unnest(v_pids, v_prices) AS u(pid, price)
        WHERE i."orderId" = v_order_id AND i."productId" = u.pid AND i."unitPrice" <> u.price;
        UPDATE "Order" o SET total = v_total WHERE o.id = v_order_id;
        v_result := internal.checkout_result(v_order_id, p_user_id, v_total, p_shipping_address,
                                             p_idempotency_key, v_at, v_items);
    END IF;
    PERFORM set_config('mk.stock_reason', '', true), set_config('mk.order_id', '', true);
    -- Early lock release, for callers that asked for it (setting mk.release_early = 'on') and
    -- only when this checkout had to queue: the commit then does not wait for its WAL flush, so
    -- the products' locks go to the next buyer as soon as the commit is recorded, not after the
    -- disk write. The caller then sees mk.flush_pending = 'on' after this call and must not
    -- acknowledge the sale before a later durable commit (one that writes WAL) has flushed
    -- past it. Other callers (psql) always get a durable commit.
    IF v_queued AND current_setting('mk.release_early', true) = 'on' THEN
        PERFORM set_config('synchronous_commit', 'off', true), set_config('mk.flush_pending', 'on', true);
    END IF;
    RETURN v_result;
END
$$;
COMMENT ON FUNCTION api.checkout(text, jsonb, text) IS
    'Turns the buyer''s cart into one PENDING_PAYMENT order atomically (all lines or none), decrementing stock; replays by idempotency key.';
REVOKE ALL ON FUNCTION api.checkout(text, jsonb, text) FROM PUBLIC;

-- internal.checkout_result: the JSON api.checkout answers with, built from what it wrote (so the
-- order need not be read back). A single SELECT of one expression, with no SET clause and no
-- sub-query, so the planner inlines it into the caller's expression: on every checkout's path,
-- a SQL function that is not inlined is parsed and planned again in every transaction.
-- Raises: nothing. Callers: api.checkout.
CREATE OR REPLACE FUNCTION internal.checkout_result(
    p_order_id text, p_user_id text, p_total numeric, p_address jsonb, p_key text,
    p_at timestamptz, p_items jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object(
        'id', p_order_id, 'userId', p_user_id, 'status', 'PENDING_PAYMENT', 'total', p_total,
        'shippingAddress', p_address, 'idempotencyKey', p_key,
        'createdAt', p_at, 'updatedAt', p_at, 'replayed', false, 'items', p_items)
$$;
COMMENT ON FUNCTION internal.checkout_result(text, text, numeric, jsonb, text, timestamptz, jsonb) IS
    'The JSON result of api.checkout, built from the values it wrote.';
REVOKE ALL ON FUNCTION internal.checkout_result(text, text, numeric, jsonb, text, timestamptz, jsonb) FROM PUBLIC;

-- internal.checkout_replay: the original order for a replayed idempotency key, or NULL when the
-- key is new.
-- Raises: MKI22 when the key was used with another payload. Callers: api.checkout.
CREATE OR REPLACE FUNCTION internal.checkout_replay(p_user_id text, p_key text, p_hash text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_existing record;
BEGIN
    SELECT o.id, o."requestHash" INTO v_existing
    FROM "Order" o
    WHERE o."userId" = p_user_id AND o."idempotencyKey" = p_key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_existing."requestHash" IS DISTINCT FROM p_hash THEN
        RAISE EXCEPTION USING ERRCODE = 'MKI22',
            MESSAGE = 'this idempotency key was already used with another payload',
            DETAIL = jsonb_build_object('idempotencyKey', p_key, 'orderId', v_existing.id)::text,
            HINT = 'Use a new key for a new checkout.';
    END IF;
    RETURN internal.order_json(v_existing.id) || jsonb_build_object('replayed', true);
END
$$;
COMMENT ON FUNCTION internal.checkout_replay(text, text, text) IS
    'The original order of a replayed idempotency key (MKI22 when the payload differs), or NULL.';
REVOKE ALL ON FUNCTION internal.checkout_replay(text, text, text) FROM PUBLIC;

-- ==== sql/api/orders.sql as of 0004_api_functions ====
-- api.cancel_order: cancels an order that has not shipped and returns its stock, exactly once:
-- the status is re-checked under the order's row lock, so a concurrent cancel, expiry or payment
-- sees the outcome of this one. With p_actor_id, the actor must own the order or be an ADMIN
-- (another user's order is reported as not found).
-- Raises: MK503 maintenance; MK404 unknown order (or not the actor's); MKS09 already cancelled,
--         shipped or delivered.
-- Callers: marketplace_app, DBAs.
CREATE OR REPLACE FUNCTION api.cancel_order(
    p_order_id text,
    p_actor_id text DEFAULT NULL,
    p_reason text DEFAULT 'CANCELLED_BY_BUYER')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_order record;
BEGIN
    PERFORM internal.assert_writable();
    SELECT o.id, o."userId", o.status INTO v_order FROM "Order" o WHERE o.id = p_order_id FOR UPDATE;
    IF NOT FOUND OR (p_actor_id IS NOT NULL AND v_order."userId" <> p_actor_id
                     AND NOT EXISTS (SELECT 1 FROM "User" u WHERE u.id = p_actor_id AND u.role = 'ADMIN')) THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'order not found',
            DETAIL = jsonb_build_object('orderId', p_order_id)::text;
    END IF;
    IF v_order.status NOT IN ('PENDING_PAYMENT', 'PAYMENT_FAILED', 'PAID') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKS09',
            MESSAGE = format('order %s is %s and can no longer be cancelled', p_order_id, v_order.status),
            DETAIL = jsonb_build_object('orderId', p_order_id, 'status', v_order.status)::text;
    END IF;
    PERFORM internal.return_stock(ARRAY[p_order_id], ARRAY['CANCEL']);
    UPDATE "Order" o SET status = 'CANCELLED', "cancelledAt" = now(), "updatedAt" = now(),
                         "cancelReason" = left(coalesce(p_reason, 'CANCELLED'), 200)
    WHERE o.id = p_order_id;
    RETURN internal.order_json(p_order_id);
END
$$;
COMMENT ON FUNCTION api.cancel_order(text, text, text) IS
    'Cancels a not-yet-shipped order and returns its stock exactly once (MKS09 when no longer cancellable).';
REVOKE ALL ON FUNCTION api.cancel_order(text, text, text) FROM PUBLIC;

-- api.record_payment: records a payment outcome. PENDING_PAYMENT or PAYMENT_FAILED becomes PAID on
-- success, PAYMENT_FAILED on failure (the stock stays held, so the buyer can pay again within the
-- hold window). A repeated outcome, or a failure after the order was paid, changes nothing. The
-- result carries "changed".
-- Raises: MK503 maintenance; MK404 unknown order; MKS09 a success for an order already cancelled
--         (the money must be refunded by hand).
-- Callers: marketplace_app (payment webhook), DBAs.
CREATE OR REPLACE FUNCTION api.record_payment(
    p_order_id text,
    p_succeeded boolean,
    p_reference text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_status text;
    v_new    text;
BEGIN
    PERFORM internal.assert_writable();
    IF p_succeeded IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'succeeded must be true or false',
            DETAIL = jsonb_build_object('field', 'succeeded')::text;
    END IF;
    SELECT o.status INTO v_status FROM "Order" o WHERE o.id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'order not found',
            DETAIL = jsonb_build_object('orderId', p_order_id)::text;
    END IF;
    v_new := CASE
        WHEN v_status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND p_succeeded THEN 'PAID'
        WHEN v_status = 'PENDING_PAYMENT' THEN 'PAYMENT_FAILED'
        ELSE v_status END;
    IF v_status = 'CANCELLED' AND p_succeeded THEN
        RAISE EXCEPTION USING ERRCODE = 'MKS09',
            MESSAGE = format('order %s was cancelled before its payment arrived', p_order_id),
            DETAIL = jsonb_build_object('orderId', p_order_id, 'status', v_status,
                                        'reference', p_reference)::text,
            HINT = 'Refund the payment; the stock has already been returned.';
    END IF;
    IF v_new <> v_status THEN
        UPDATE "Order" o SET status = v_new, "updatedAt" = now(),
            "paidAt" = CASE WHEN v_new = 'PAID' THEN now() END,
            "paymentReference" = coalesce(left(p_reference, 200), o."paymentReference")
        WHERE o.id = p_order_id;
    END IF;
    RETURN internal.order_json(p_order_id) || jsonb_build_object('changed', v_new <> v_status);
END
$$;
COMMENT ON FUNCTION api.record_payment(text, boolean, text) IS
    'Records a payment outcome: PAID on success, PAYMENT_FAILED on failure (stock stays held); repeats change nothing.';
REVOKE ALL ON FUNCTION api.record_payment(text, boolean, text) FROM PUBLIC;

-- api.expire_pending_orders: cancels up to p_batch_size unpaid (PENDING_PAYMENT or
-- PAYMENT_FAILED) orders older than the hold window and returns their stock exactly once.
-- FOR UPDATE SKIP LOCKED lets several runs share the work and never wait on an order that a
-- payment or cancel holds; the status is re-checked under the lock. Returns how many it expired;
-- call again while it returns p_batch_size.
-- Raises: MK503 maintenance; MKV00 negative window or batch size outside 1..10000.
-- Callers: the expiry worker (python -m pyapp expire-orders), DBAs.
CREATE OR REPLACE FUNCTION api.expire_pending_orders(
    p_older_than interval DEFAULT '30 minutes',
    p_batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_ids     text[];
    v_reasons text[];
BEGIN
    PERFORM internal.assert_writable();
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the hold window must not be negative',
            DETAIL = jsonb_build_object('field', 'older_than')::text;
    END IF;
    IF p_batch_size IS NULL OR p_batch_size NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'batch size must be between 1 and 10000',
            DETAIL = jsonb_build_object('field', 'batch_size', 'value', p_batch_size)::text;
    END IF;
    SELECT array_agg(o.id ORDER BY o.id),
           array_agg(CASE WHEN o.status = 'PAYMENT_FAILED' THEN 'PAYMENT_FAILED_EXPIRED' ELSE 'EXPIRED' END
                     ORDER BY o.id)
    INTO v_ids, v_reasons
    FROM (SELECT o.id, o.status FROM "Order" o
          WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')
            AND o."createdAt" < now() - p_older_than
          ORDER BY o."createdAt"
          LIMIT p_batch_size
          FOR UPDATE SKIP LOCKED) o;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM internal.return_stock(v_ids, v_reasons);
    UPDATE "Order" o SET status = 'CANCELLED', "cancelledAt" = now(), "updatedAt" = now(),
                         "cancelReason" = r.reason
    FROM unnest(v_ids, v_reasons) AS r(oid, reason)
    WHERE o.id = r.oid;
    RETURN array_length(v_ids, 1);
END
$$;
COMMENT ON FUNCTION api.expire_pending_orders(interval, integer) IS
    'Cancels up to batch_size unpaid orders older than the hold window and returns their stock exactly once; safe to run concurrently.';
REVOKE ALL ON FUNCTION api.expire_pending_orders(interval, integer) FROM PUBLIC;

-- api.get_order: one order with its items. With p_user_id, only that user's order is found
-- (another user's order is reported as not found, so ids cannot be probed).
-- Raises: MK404. Callers: marketplace_app, DBAs.
CREATE OR REPLACE FUNCTION api.get_order(p_order_id text, p_user_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    v := internal.order_json(p_order_id);
    IF v IS NULL OR (p_user_id IS NOT NULL AND v ->> 'userId' <> p_user_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'order not found',
            DETAIL = jsonb_build_object('orderId', p_order_id)::text;
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION api.get_order(text, text) IS 'One order with its items; MK404 when absent or another user''s.';
REVOKE ALL ON FUNCTION api.get_order(text, text) FROM PUBLIC;

-- api.list_orders: the user's orders, newest first, with their items.
-- Raises: MKV00 limit outside 1..200. Callers: marketplace_app, DBAs.
CREATE OR REPLACE FUNCTION api.list_orders(p_user_id text, p_limit integer DEFAULT 50)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'limit must be between 1 and 200',
            DETAIL = jsonb_build_object('field', 'limit', 'value', p_limit)::text;
    END IF;
    SELECT coalesce(jsonb_agg(internal.order_json(o.id) ORDER BY o."createdAt" DESC, o.id), '[]'::jsonb) INTO v
    FROM (SELECT id, "createdAt" FROM "Order" WHERE "userId" = p_user_id
          ORDER BY "createdAt" DESC, id LIMIT p_limit) o;
    RETURN jsonb_build_object('items', v);
END
$$;
COMMENT ON FUNCTION api.list_orders(text, integer) IS 'The user''s orders, newest first, with items.';
REVOKE ALL ON FUNCTION api.list_orders(text, integer) FROM PUBLIC;

-- ==== sql/api/integrity_report.sql as of 0004_api_functions ====
-- api.integrity_report: the deployment checklist's integrity checks, one row per check
-- (check_name, ok, detail): no negative stock, every version >= 1, stock equals the ledger, every
-- order has items and a total equal to their sum, no unpaid order past the hold window, and
-- every expected migration applied.
-- Raises: nothing. Callers: marketplace_app (/health, alerts), `python -m pyapp verify`, DBAs.
CREATE OR REPLACE FUNCTION api.integrity_report(p_hold interval DEFAULT '30 minutes')
RETURNS TABLE (check_name text, ok boolean, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n       bigint;
    v_ids     text;
    v_missing text[];
BEGIN
    SELECT count(*), string_agg(id, ', ' ORDER BY id) INTO v_n, v_ids
    FROM (SELECT id FROM "Product" WHERE stock < 0 ORDER BY id) p;
    RETURN QUERY SELECT 'no_negative_stock', v_n = 0,
        CASE WHEN v_n = 0 THEN 'no product has stock below 0'
             ELSE format('%s products below 0: %s', v_n, left(v_ids, 500)) END;

    SELECT count(*) INTO v_n FROM "Product" WHERE "version" IS NULL OR "version" < 1;
    RETURN QUERY SELECT 'versions_positive', v_n = 0,
        CASE WHEN v_n = 0 THEN 'every product has version >= 1'
             ELSE format('%s products with version < 1', v_n) END;

    SELECT count(*), string_agg(id, ', ' ORDER BY id) INTO v_n, v_ids FROM (
        SELECT p.id FROM "Product" p
        LEFT JOIN (SELECT "productId", sum(delta) AS s FROM "StockLedger" GROUP BY 1) l ON l."productId" = p.id
        WHERE p.stock <> coalesce(l.s, 0)
        ORDER BY p.id LIMIT 1000) d;
    RETURN QUERY SELECT 'stock_matches_ledger', v_n = 0,
        CASE WHEN v_n = 0 THEN 'every product''s stock equals the sum of its ledger'
             ELSE format('%s products differ from their ledger: %s', v_n, left(v_ids, 500)) END;

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.total IS DISTINCT FROM (SELECT sum(i.quantity * i."unitPrice") FROM "OrderItem" i WHERE i."orderId" = o.id);
    RETURN QUERY SELECT 'orders_complete', v_n = 0,
        CASE WHEN v_n = 0 THEN 'every order has items and a total equal to their sum'
             ELSE format('%s orders without items or with a wrong total', v_n) END;

    SELECT count(*) INTO v_n FROM "Order"
    WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND "createdAt" < now() - p_hold;
    RETURN QUERY SELECT 'no_orders_stuck', v_n = 0,
        CASE WHEN v_n = 0 THEN format('no unpaid order older than %s', p_hold)
             ELSE format('%s unpaid orders older than %s: is the expiry job running?', v_n, p_hold) END;

    IF to_regclass('public._yoyo_migration') IS NULL THEN
        RETURN QUERY SELECT 'migrations_applied', false, 'no yoyo migration table: the schema was not built by migrations';
    ELSE
        EXECUTE 'SELECT array_agg(e ORDER BY e) FROM unnest($1) e
                 WHERE e NOT IN (SELECT migration_id FROM public._yoyo_migration)'
        INTO v_missing USING internal.expected_migrations();
        RETURN QUERY SELECT 'migrations_applied', v_missing IS NULL,
            CASE WHEN v_missing IS NULL THEN format('all %s expected migrations applied',
                                                    cardinality(internal.expected_migrations()))
                 ELSE 'missing: ' || array_to_string(v_missing, ', ') END;
    END IF;
END
$$;
COMMENT ON FUNCTION api.integrity_report(interval) IS
    'Integrity checklist, one row per check: no negative stock, versions >= 1, stock = ledger, orders complete, none stuck past the hold window, migrations applied.';
REVOKE ALL ON FUNCTION api.integrity_report(interval) FROM PUBLIC;

-- ==== sql/api/evaluate_alerts.sql as of 0009_ops_input_checks ====
-- api.evaluate_alerts: the operational alert rules evaluated on live data, one row per rule
-- (rule, severity, value, threshold, firing, detail); a rule fires when value > threshold:
--   negative_stock (critical): products with stock < 0;
--   concurrency_errors (warning): ConcurrencyErrors persisted by the HTTP workers in the window;
--   failed_or_cancelled_orders (warning): orders that became PAYMENT_FAILED or CANCELLED in the window;
--   unpaid_past_hold (warning): unpaid orders older than the hold window (the expiry job is not running).
-- monitoring/alerts.yml holds the same rules for Prometheus.
-- Raises: MKV00 for a NULL or negative threshold or hold, or a window that is NULL or not
-- positive. Callers: `python -m pyapp alerts`, DBAs, marketplace_app.
CREATE OR REPLACE FUNCTION api.evaluate_alerts(
    p_hold interval DEFAULT '30 minutes',
    p_window interval DEFAULT '1 hour',
    p_max_negative_stock bigint DEFAULT 0,
    p_max_concurrency_errors bigint DEFAULT 100,
    p_max_failed_orders bigint DEFAULT 50,
    p_max_unpaid_past_hold bigint DEFAULT 0)
RETURNS TABLE (rule text, severity text, value bigint, threshold bigint, firing boolean, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    -- Each argument on its own: least() would skip a NULL threshold, whose rule then never fires.
    IF p_hold IS NULL OR p_window IS NULL OR p_hold < interval '0' OR p_window <= interval '0'
       OR p_max_negative_stock IS NULL OR p_max_concurrency_errors IS NULL
       OR p_max_failed_orders IS NULL OR p_max_unpaid_past_hold IS NULL
       OR least(p_max_negative_stock, p_max_concurrency_errors, p_max_failed_orders,
                p_max_unpaid_past_hold) < 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00',
            MESSAGE = 'thresholds and the hold must be non-negative, the window positive, none of them NULL',
            DETAIL = jsonb_build_object('field', 'threshold')::text;
    END IF;

    SELECT count(*) INTO v_n FROM "Product" p WHERE p.stock < 0;
    RETURN QUERY SELECT 'negative_stock', 'critical', v_n, p_max_negative_stock, v_n > p_max_negative_stock,
        format('%s products with stock below 0', v_n);

    -- A minute row counts when any part of it lies in the window.
    SELECT coalesce(sum(s.conflicts), 0) INTO v_n FROM internal.checkout_stats s
    WHERE s.minute > now() - p_window - interval '1 minute' AND s.minute <= now();
    RETURN QUERY SELECT 'concurrency_errors', 'warning', v_n, p_max_concurrency_errors, v_n > p_max_concurrency_errors,
        format('%s ConcurrencyErrors in the last %s', v_n, p_window);

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.status IN ('PAYMENT_FAILED', 'CANCELLED') AND o."updatedAt" > now() - p_window;
    RETURN QUERY SELECT 'failed_or_cancelled_orders', 'warning', v_n, p_max_failed_orders, v_n > p_max_failed_orders,
        format('%s orders became PAYMENT_FAILED or CANCELLED in the last %s', v_n, p_window);

    SELECT count(*) INTO v_n FROM "Order" o
    WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND o."createdAt" < now() - p_hold;
    RETURN QUERY SELECT 'unpaid_past_hold', 'warning', v_n, p_max_unpaid_past_hold, v_n > p_max_unpaid_past_hold,
        format('%s unpaid orders older than %s: is expire-orders running?', v_n, p_hold);
END
$$;
COMMENT ON FUNCTION api.evaluate_alerts(interval, interval, bigint, bigint, bigint, bigint) IS
    'Operational alert rules on live data (negative stock, ConcurrencyErrors, failed or cancelled orders, unpaid past the hold), one row each.';
REVOKE ALL ON FUNCTION api.evaluate_alerts(interval, interval, bigint, bigint, bigint, bigint) FROM PUBLIC;

-- ==== sql/api/ops_snapshot.sql as of 0004_api_functions ====
-- api.ops_snapshot: what GET /metrics reads from the database at scrape time, in one call: orders
-- by status (every status of the contract, zeros included, so the series never disappear),
-- products with negative stock, and unpaid orders older than the hold window.
-- Raises: nothing. Callers: marketplace_app (GET /metrics), DBAs.
CREATE OR REPLACE FUNCTION api.ops_snapshot(p_hold interval DEFAULT '30 minutes')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_orders   jsonb;
    v_negative bigint;
    v_unpaid   bigint;
BEGIN
    SELECT jsonb_object_agg(s.status, coalesce(o.n, 0)) INTO v_orders
    FROM (SELECT unnest(ARRAY['PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'SHIPPED', 'DELIVERED'])
          UNION SELECT DISTINCT status FROM "Order") s (status)
    LEFT JOIN (SELECT status, count(*) AS n FROM "Order" GROUP BY status) o ON o.status = s.status;
    SELECT count(*) INTO v_negative FROM "Product" WHERE stock < 0;
    SELECT count(*) INTO v_unpaid FROM "Order"
    WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND "createdAt" < now() - p_hold;
    RETURN jsonb_build_object('ordersByStatus', v_orders, 'negativeStock', v_negative,
                              'unpaidPastHold', v_unpaid, 'holdMinutes', extract(epoch FROM p_hold) / 60);
END
$$;
COMMENT ON FUNCTION api.ops_snapshot(interval) IS
    'Scrape-time figures for /metrics: orders by status, products with negative stock, unpaid orders past the hold window.';
REVOKE ALL ON FUNCTION api.ops_snapshot(interval) FROM PUBLIC;
