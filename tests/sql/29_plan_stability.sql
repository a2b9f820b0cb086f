-- Plan stability of the per-buyer queries every checkout runs: app.checkout's count of the
-- buyer's unpaid orders and internal.assert_max_per_buyer's units held must read the buyer's own
-- orders (index "Order_userId_idx"), never the expiry job's partial index of every unpaid order in
-- the shop. Statistics taken while almost no order was unpaid (a quiet night, a fresh restore)
-- make that partial index look cheapest; a plan cached from them then reads every unpaid order
-- on every sale, and checkout slows down with each sale it makes. Counted with the transaction's
-- own index-scan counters, so the test asserts which index ran, not how long it took.
BEGIN;
\ir lib/helpers.psql
SELECT plan(7);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller, pg_temp.mk_user('BUYER') AS buyer,
                               encode(sha256('plan-tok'::bytea), 'hex') AS tok;
ALTER TABLE fx ADD p text, ADD capped text;
UPDATE fx SET p = pg_temp.mk_product(seller, 100), capped = pg_temp.mk_product(seller, 100);
UPDATE "Product" SET "maxPerBuyer" = 50 WHERE id = (SELECT capped FROM fx);
SELECT api.issue_token(buyer, tok) ->> 'userId' FROM fx;

-- 3,000 other buyers' orders of p, all DELIVERED, and statistics taken now: no unpaid order
-- at all, and no item of the capped product.
CREATE TEMP TABLE others AS SELECT pg_temp.mk_user('BUYER') AS id FROM generate_series(1, 300);
CREATE FUNCTION pg_temp.orders_of(p_status text, p_product text) RETURNS void LANGUAGE sql AS $$
    WITH o AS (
        INSERT INTO "Order" (id, "userId", status, total, "shippingAddress", "createdAt", "updatedAt")
        SELECT gen_random_uuid()::text, u.id, p_status, 10, '{"city": "Oaxaca"}', now(), now()
        FROM others u, generate_series(1, 10)
        RETURNING id)
    INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice") SELECT o.id, p_product, 1, 10 FROM o
$$;
SELECT pg_temp.orders_of('DELIVERED', p) FROM fx;
ANALYZE "Order";
ANALYZE "OrderItem";
-- Then the limited edition sells: 3,000 unpaid orders of it that the statistics do not know about.
SELECT pg_temp.orders_of('PENDING_PAYMENT', capped) FROM fx;
SELECT api.set_limits('{"maxUnpaidOrders": 100}');

-- Index scans of this transaction so far, per index.
CREATE FUNCTION pg_temp.scans(p_index text) RETURNS bigint LANGUAGE sql AS $$
    SELECT pg_stat_get_xact_numscans(p_index::regclass)
$$;
CREATE TEMP TABLE before AS
    SELECT pg_temp.scans('"Order_unpaid_createdAt_idx"') AS unpaid, pg_temp.scans('"OrderItem_productId_idx"') AS items,
           pg_temp.scans('"Order_userId_idx"') AS by_user;

-- Six checkouts, so that PL/pgSQL moves from custom plans to its cached generic plan (after
-- five); the buyer keeps them unpaid, so the units held are looked up for real.
DO $$
DECLARE
    v_fx record;
BEGIN
    SELECT * INTO v_fx FROM fx;
    FOR i IN 1 .. 6 LOOP
        PERFORM app.add_to_cart(v_fx.tok, v_fx.p, 1);
        PERFORM app.add_to_cart(v_fx.tok, v_fx.capped, 1);
        PERFORM app.checkout(v_fx.tok, '{"city": "Oaxaca"}', NULL);
    END LOOP;
END
$$;

SELECT is((SELECT count(*) FROM "Order" WHERE "userId" = (SELECT buyer FROM fx)), 6::bigint,
          'the buyer checked out six orders');
SELECT is(pg_temp.scans('"Order_unpaid_createdAt_idx"') - (SELECT unpaid FROM before), 0::bigint,
          'no checkout read the partial index of all unpaid orders');
SELECT is(pg_temp.scans('"OrderItem_productId_idx"') - (SELECT items FROM before), 0::bigint,
          'nor the items of the capped product');
SELECT cmp_ok(pg_temp.scans('"Order_userId_idx"') - (SELECT by_user FROM before), '>=', 12::bigint,
              'each checkout read the buyer''s own orders (unpaid count and units held)');

-- The same holds for the refusals: a buyer at the limit of unpaid orders (MKU09), and a
-- quantity over a product's cap with the unit already held (MKQ09).
SELECT api.set_limits('{"maxUnpaidOrders": 6}');
SELECT app.add_to_cart(tok, p, 1) FROM fx;
SELECT throws_ok(format('SELECT app.checkout(%L, ''{"city": "Oaxaca"}'', NULL)', tok), 'MKU09', NULL,
                 'a buyer at the limit is refused') FROM fx;
SELECT throws_ok(format('SELECT app.add_to_cart(%L, %L, 45)', tok, capped), 'MKQ09', NULL,
                 'a quantity over the cap with the unit held is refused') FROM fx;
SELECT is(pg_temp.scans('"Order_unpaid_createdAt_idx"') + pg_temp.scans('"OrderItem_productId_idx"')
          - (SELECT unpaid + items FROM before), 0::bigint,
          'and neither refusal read either index');

SELECT * FROM finish();
ROLLBACK;
