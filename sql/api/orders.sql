-- api.cancel_order: cancels an order that has not shipped and returns its stock, exactly once:
-- the status is re-checked under the order's row lock, so a concurrent cancel, expiry or payment
-- sees the outcome of this one. With p_actor_id, the actor must own the order or be an ADMIN
-- (another user's order is reported as not found).
-- Raises: MK503 maintenance; MK404 unknown order (or not the actor's); MKS09 already cancelled,
--         shipped or delivered.
-- Callers: app.cancel_order (HTTP), DBAs.
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
-- Callers: app.payment_webhook (after verifying the signature), DBAs.
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
-- payment or cancel holds; the status is re-checked under the lock. The batch is expired in one
-- go; if that raises, it is redone order by order, each in its own subtransaction, so that one
-- order that cannot be expired (say, returning its units would overflow its product's stock)
-- cannot hold back the others: such an order is skipped, recorded in internal.expiry_failure
-- (see api.expiry_failures) with a WARNING, and not selected again for 10 minutes, so it never
-- sits at the head of the queue. Returns how many it expired; call again while it returns
-- p_batch_size.
-- Buyers of the same products are kept waiting as little as possible: the orders are cancelled
-- first and their stock is returned last, one UPDATE per product (internal.return_stock), so a
-- product's row is locked only for the end of the transaction. That commit does not wait for the
-- disk (synchronous_commit off for this transaction only), so the products' locks are released
-- without waiting for a WAL flush: a crash can lose the last expiries, which leaves those orders
-- unpaid with their stock held, as before the pass, and the next pass expires them again. Nothing
-- durable can depend on a lost expiry: a sale of the returned units commits after it, and its
-- durable commit flushes the WAL past the expiry's.
-- It runs during maintenance mode too: it is housekeeping, not a client's write, and a rollback
-- drains the unpaid orders with it while checkouts and payments are paused (docs/runbook.md).
-- Raises: MKV00 negative window or batch size outside 1..10000. WARNING for each order skipped.
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
    v_expired integer := 0;
    v_state   text;
    v_message text;
BEGIN
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the hold window must not be negative',
            DETAIL = jsonb_build_object('field', 'older_than')::text;
    END IF;
    IF p_batch_size IS NULL OR p_batch_size NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'batch size must be between 1 and 10000',
            DETAIL = jsonb_build_object('field', 'batch_size', 'value', p_batch_size)::text;
    END IF;
    -- The row locks are taken here, outside the subtransactions below, so they stay held
    -- whichever of them rolls back.
    SELECT array_agg(o.id ORDER BY o.id),
           array_agg(CASE WHEN o.status = 'PAYMENT_FAILED' THEN 'PAYMENT_FAILED_EXPIRED' ELSE 'EXPIRED' END
                     ORDER BY o.id)
    INTO v_ids, v_reasons
    FROM (SELECT o.id, o.status FROM "Order" o
          WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')
            AND o."createdAt" < now() - p_older_than
            AND NOT EXISTS (SELECT 1 FROM internal.expiry_failure f
                            WHERE f.order_id = o.id AND f.last_failed_at > now() - interval '10 minutes')
          ORDER BY o."createdAt"
          LIMIT p_batch_size
          FOR UPDATE OF o SKIP LOCKED) o;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    BEGIN
        UPDATE "Order" o SET status = 'CANCELLED', "cancelledAt" = now(), "updatedAt" = now(),
                             "cancelReason" = r.reason
        FROM unnest(v_ids, v_reasons) AS r(oid, reason)
        WHERE o.id = r.oid;
        PERFORM internal.return_stock(v_ids, v_reasons);
        RETURN array_length(v_ids, 1);
    EXCEPTION WHEN OTHERS THEN
        -- Redone below, one order at a time.
        NULL;
    END;
    FOR i IN 1 .. array_length(v_ids, 1) LOOP
        BEGIN
            UPDATE "Order" o SET status = 'CANCELLED', "cancelledAt" = now(), "updatedAt" = now(),
                                 "cancelReason" = v_reasons[i]
            WHERE o.id = v_ids[i];
            PERFORM internal.return_stock(ARRAY[v_ids[i]], ARRAY[v_reasons[i]]);
            v_expired := v_expired + 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
            INSERT INTO internal.expiry_failure AS f (order_id, sqlstate, message)
            VALUES (v_ids[i], v_state, left(v_message, 1000))
            ON CONFLICT (order_id) DO UPDATE
                SET attempts = f.attempts + 1, last_failed_at = now(),
                    sqlstate = EXCLUDED.sqlstate, message = EXCLUDED.message;
            RAISE WARNING USING
                MESSAGE = format('order %s could not be expired and was skipped: %s (SQLSTATE %s)',
                                 v_ids[i], v_message, v_state),
                DETAIL = jsonb_build_object('orderId', v_ids[i], 'sqlstate', v_state,
                                            'message', v_message)::text,
                HINT = 'See api.expiry_failures(); it is retried after 10 minutes.';
        END;
    END LOOP;
    RETURN v_expired;
END
$$;
COMMENT ON FUNCTION api.expire_pending_orders(interval, integer) IS
    'Cancels up to batch_size unpaid orders older than the hold window and returns their stock exactly once; skips and records (api.expiry_failures) an order that fails; safe to run concurrently.';
REVOKE ALL ON FUNCTION api.expire_pending_orders(interval, integer) FROM PUBLIC;

-- api.expiry_failures: the unpaid orders api.expire_pending_orders had to skip, with the last
-- error and how often it was tried; an order leaves the list once it is paid, cancelled or
-- expired after all.
-- Raises: nothing. Callers: api.integrity_report, api.evaluate_alerts, api.ops_snapshot,
-- `python -m pyapp expire-orders`, DBAs.
CREATE OR REPLACE FUNCTION api.expiry_failures()
RETURNS TABLE (order_id text, sqlstate text, message text, attempts integer,
               first_failed_at timestamptz, last_failed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT f.order_id, f.sqlstate, f.message, f.attempts, f.first_failed_at, f.last_failed_at
    FROM internal.expiry_failure f JOIN "Order" o ON o.id = f.order_id
    WHERE o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')
    ORDER BY f.first_failed_at, f.order_id
$$;
COMMENT ON FUNCTION api.expiry_failures() IS
    'Unpaid orders the expiry job could not expire: order_id, sqlstate, message, attempts, first and last failure.';
REVOKE ALL ON FUNCTION api.expiry_failures() FROM PUBLIC;

-- api.get_order: one order with its items. With p_user_id, only that user's order is found
-- (another user's order is reported as not found, so ids cannot be probed).
-- Raises: MK404. Callers: app.get_order (HTTP), DBAs.
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
-- Raises: MKV00 limit outside 1..200. Callers: app.list_orders (HTTP), DBAs.
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
