-- api.checkout: turns the buyer's whole cart into one PENDING_PAYMENT order, atomically: the DBA's
-- entry to internal.checkout below, after the maintenance check (app.checkout makes that check
-- in its own first query and calls internal.checkout directly).
-- Raises: MK503 maintenance; what internal.checkout raises (MKV00, MKI22, MK404, MKE00, MK400,
--         MKQ09).
-- Callers: DBAs (psql).
CREATE OR REPLACE FUNCTION api.checkout(
    p_user_id text,
    p_shipping_address jsonb,
    p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM internal.assert_writable();
    RETURN internal.checkout(p_user_id, p_shipping_address, p_idempotency_key);
END
$$;
COMMENT ON FUNCTION api.checkout(text, jsonb, text) IS
    'Turns the buyer''s cart into one PENDING_PAYMENT order atomically (all lines or none), decrementing stock; replays by idempotency key.';
REVOKE ALL ON FUNCTION api.checkout(text, jsonb, text) FROM PUBLIC;

-- internal.checkout: the checkout itself, for a caller that has checked maintenance mode
-- (api.checkout, app.checkout). The cart is claimed with DELETE ... RETURNING, so two concurrent
-- checkouts of one cart can never both get its lines (the second finds it empty). Quantities are
-- summed per product and products are locked in id order, so two carts can never deadlock. Each
-- decrement is conditional (stock >= quantity) and re-checked by PostgreSQL on the newest row
-- version, so a busy product never yields a spurious conflict. The order and its items are
-- written first and the hot-row UPDATEs come last: a product's row lock is held until commit, and
-- that is what bounds throughput on a popular product. Prices are copied from the rows sold. With
-- an idempotency key, the same key and payload return the original order (with "replayed": true)
-- and create nothing. A caller that set mk.release_early = 'on' may get a commit that does not
-- wait for the disk when the checkout had to queue for a product (it then finds
-- mk.flush_pending = 'on'). A product with a maxPerBuyer refuses a cart whose quantity of it, with
-- the units the buyer holds in unpaid orders, exceeds the cap; the order is not created and the
-- cart stays.
-- Every statement here runs on each sale, so the function keeps them few: the cart is read
-- once, and the arrays come from one sorted sub-query instead of one sort per aggregate. It
-- carries no SET clause (a function with one saves and restores the setting on every call): its
-- callers are SECURITY DEFINER functions that pin search_path already, nobody else may call it,
-- and it names every table with its schema.
-- Raises: MKV00 bad address or key; MKI22 key reused with another payload; MK404 unknown user;
--         MKE00 empty cart; MK400 insufficient stock (DETAIL lists every short product with
--         requested and available); MKQ09 over a product's maxPerBuyer (DETAIL: productId,
--         maxPerBuyer, requested, held).
-- Callers: api.checkout, app.checkout.
CREATE OR REPLACE FUNCTION internal.checkout(
    p_user_id text,
    p_shipping_address jsonb,
    p_idempotency_key text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_hash      text;
    v_pids      text[];
    v_qtys      integer[];
    v_prices    numeric(10,2)[];
    v_caps      integer[];
    v_capped    boolean;
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
BEGIN
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
    -- on its row lock, and the prices read are the ones the order is written with. The lines are
    -- sorted once, in the sub-query, and aggregated in that order.
    WITH claimed AS (
        DELETE FROM public."CartItem" c WHERE c."userId" = p_user_id
        RETURNING c."productId", c.quantity
    )
    SELECT array_agg(l.pid), array_agg(l.qty), array_agg(l.price), sum(l.price * l.qty),
           array_agg(l.cap), bool_or(l.cap IS NOT NULL),
           jsonb_agg(jsonb_build_object('productId', l.pid, 'quantity', l.qty, 'unitPrice', l.price)),
           jsonb_agg(jsonb_build_object('productId', l.pid, 'requested', l.qty, 'available', l.stock))
               FILTER (WHERE l.stock < l.qty)
    INTO v_pids, v_qtys, v_prices, v_total, v_caps, v_capped, v_items, v_short
    FROM (SELECT s.pid, s.qty, p.price, p."maxPerBuyer" AS cap, coalesce(p.stock, 0) AS stock
          FROM (SELECT "productId" AS pid, sum(quantity)::integer AS qty FROM claimed GROUP BY 1) s
          LEFT JOIN public."Product" p ON p.id = s.pid
          ORDER BY s.pid) l;

    IF v_pids IS NULL THEN
        -- A twin with the same key that held the cart has just committed: its order is visible now.
        IF p_idempotency_key IS NOT NULL THEN
            v_result := internal.checkout_replay(p_user_id, p_idempotency_key, v_hash);
            IF v_result IS NOT NULL THEN
                RETURN v_result;
            END IF;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM public."User" u WHERE u.id = p_user_id) THEN
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
    -- Only carts with a capped product pay for the look at the buyer's unpaid orders. The line
    -- of a product cannot be re-added while another checkout of this buyer holds its claimed row
    -- (the upsert waits for that checkout to end), so any order that took it is counted here.
    IF v_capped THEN
        PERFORM internal.assert_max_per_buyer(p_user_id, v_pids, v_qtys, v_caps);
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
        INSERT INTO public."Order" (id, "userId", status, total, "shippingAddress", "idempotencyKey",
                                    "requestHash", "createdAt", "updatedAt")
        VALUES (v_order_id, p_user_id, 'PENDING_PAYMENT', v_total, p_shipping_address,
                p_idempotency_key, v_hash, v_at, v_at)
        RETURNING id
    )
    INSERT INTO public."OrderItem" ("orderId", "productId", quantity, "unitPrice")
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
        UPDATE public."Product" p SET stock = p.stock - v_qtys[i]
        WHERE p.id = v_pids[i] AND p.stock >= v_qtys[i]
        RETURNING p.price INTO v_price;
        IF NOT FOUND THEN
            SELECT jsonb_agg(jsonb_build_object('productId', c.pid, 'requested', c.qty,
                                                'available', coalesce(p.stock, 0)) ORDER BY c.pid)
            INTO v_short
            FROM unnest(v_pids[i:], v_qtys[i:]) AS c(pid, qty)
            LEFT JOIN public."Product" p ON p.id = c.pid
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
        UPDATE public."OrderItem" i SET "unitPrice" = u.price
        FROM unnest(v_pids, v_prices) AS u(pid, price)
        WHERE i."orderId" = v_order_id AND i."productId" = u.pid AND i."unitPrice" <> u.price;
        UPDATE public."Order" o SET total = v_total WHERE o.id = v_order_id;
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
COMMENT ON FUNCTION internal.checkout(text, jsonb, text) IS
    'The checkout behind api.checkout and app.checkout (maintenance already checked): cart to one PENDING_PAYMENT order.';
REVOKE ALL ON FUNCTION internal.checkout(text, jsonb, text) FROM PUBLIC;

-- internal.checkout_result: the JSON api.checkout answers with, built from what it wrote (so the
-- order need not be read back). A single SELECT of one expression, with no SET clause and no
-- sub-query, so the planner inlines it into the caller's expression: on every checkout's path,
-- a SQL function that is not inlined is parsed and planned again in every transaction.
-- Raises: nothing. Callers: internal.checkout.
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
-- Raises: MKI22 when the key was used with another payload. Callers: internal.checkout.
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
