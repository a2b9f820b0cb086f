-- internal.product_bump_version: BEFORE UPDATE on "Product". Every change of a row, whoever makes
-- it (the api, a DBA's plain UPDATE, an ORM that sets version itself), raises version by exactly 1
-- and stamps "updatedAt", so optimistic locking can trust the column.
-- Raises: MKS09 on a change of id. Callers: the trigger only.
CREATE OR REPLACE FUNCTION internal.product_bump_version()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION USING ERRCODE = 'MKS09', MESSAGE = 'a product''s id never changes',
            DETAIL = jsonb_build_object('productId', OLD.id)::text,
            HINT = 'Orders, carts and the stock ledger refer to it.';
    END IF;
    NEW."version" := OLD."version" + 1;
    NEW."updatedAt" := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION internal.product_bump_version() IS
    'Trigger: every UPDATE of a "Product" row raises version by exactly 1 and sets "updatedAt".';
REVOKE ALL ON FUNCTION internal.product_bump_version() FROM PUBLIC;

CREATE OR REPLACE TRIGGER product_bump_version
    BEFORE UPDATE ON "Product"
    FOR EACH ROW EXECUTE FUNCTION internal.product_bump_version();

-- internal.product_stock_ledger: AFTER INSERT or UPDATE OF stock on "Product". Appends one ledger
-- row per stock change. The reason and order come from the transaction-local settings
-- mk.stock_reason and mk.order_id that the api functions set; a plain UPDATE by a DBA is recorded
-- as an ADJUSTMENT, a new product's stock as its OPENING_BALANCE.
-- One UPDATE that returns the stock of several orders at once (internal.return_stock) sets
-- mk.stock_split to {"p": product id, "rows": [[order id, units, reason], ...]}: the change is then
-- written as one ledger row per order, in that order, each with the stock after it (the last one's
-- is the row's new stock) and the row's new version. A split that names another product or whose
-- units do not add up to the change is refused, so the ledger can never disagree with the stock.
-- The two triggers on every UPDATE of a product carry no SET clause (saving and restoring a
-- setting on each row costs more than the rest of them) and name every table in full instead.
-- Raises: nothing of its own. Callers: the trigger only.
CREATE OR REPLACE FUNCTION internal.product_stock_ledger()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_delta integer := NEW.stock - CASE WHEN TG_OP = 'INSERT' THEN 0 ELSE OLD.stock END;
    v_split text;
    v_rows  jsonb;
BEGIN
    IF v_delta = 0 THEN
        RETURN NULL;
    END IF;
    v_split := current_setting('mk.stock_split', true);
    IF v_split IS NULL OR v_split = '' OR TG_OP = 'INSERT' THEN
        INSERT INTO public."StockLedger" ("productId", delta, reason, "orderId", "versionAfter", "stockAfter")
        VALUES (NEW.id, v_delta,
                CASE WHEN TG_OP = 'INSERT' THEN 'OPENING_BALANCE'
                     ELSE coalesce(nullif(current_setting('mk.stock_reason', true), ''), 'ADJUSTMENT') END,
                nullif(current_setting('mk.order_id', true), ''),
                NEW."version", NEW.stock);
        RETURN NULL;
    END IF;
    v_rows := v_split::jsonb -> 'rows';
    IF (v_split::jsonb ->> 'p') IS DISTINCT FROM NEW.id
       OR (SELECT sum((r ->> 1)::integer) FROM pg_catalog.jsonb_array_elements(v_rows) r) IS DISTINCT FROM v_delta THEN
        RAISE EXCEPTION USING ERRCODE = 'MKS09',
            MESSAGE = 'the ledger split does not match this stock change',
            DETAIL = pg_catalog.jsonb_build_object('productId', NEW.id, 'delta', v_delta, 'split', v_split::jsonb)::text;
    END IF;
    INSERT INTO public."StockLedger" ("productId", delta, reason, "orderId", "versionAfter", "stockAfter")
    SELECT NEW.id, (r ->> 1)::integer, r ->> 2, r ->> 0, NEW."version",
           OLD.stock + sum((r ->> 1)::integer) OVER (ORDER BY n)
    FROM pg_catalog.jsonb_array_elements(v_rows) WITH ORDINALITY AS e(r, n)
    ORDER BY n;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION internal.product_stock_ledger() IS
    'Trigger: appends every stock change of a "Product" to "StockLedger" (reason, delta, order, version after).';
REVOKE ALL ON FUNCTION internal.product_stock_ledger() FROM PUBLIC;

CREATE OR REPLACE TRIGGER product_stock_ledger_insert
    AFTER INSERT ON "Product"
    FOR EACH ROW WHEN (NEW.stock <> 0) EXECUTE FUNCTION internal.product_stock_ledger();
CREATE OR REPLACE TRIGGER product_stock_ledger_update
    AFTER UPDATE OF stock ON "Product"
    FOR EACH ROW WHEN (OLD.stock IS DISTINCT FROM NEW.stock) EXECUTE FUNCTION internal.product_stock_ledger();

-- internal.ledger_append_only: the ledger is history; rows are never changed or removed.
-- Raises: MKS09 on UPDATE, DELETE or TRUNCATE of "StockLedger". Callers: the triggers only.
CREATE OR REPLACE FUNCTION internal.ledger_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'MKS09',
        MESSAGE = format('"StockLedger" is append-only: %s is not allowed', TG_OP),
        DETAIL = jsonb_build_object('operation', TG_OP)::text,
        HINT = 'Correct stock with an UPDATE of "Product" (recorded as ADJUSTMENT) or api.update_product.';
END
$$;
COMMENT ON FUNCTION internal.ledger_append_only() IS 'Trigger: refuses UPDATE, DELETE and TRUNCATE of "StockLedger".';
REVOKE ALL ON FUNCTION internal.ledger_append_only() FROM PUBLIC;

CREATE OR REPLACE TRIGGER ledger_append_only
    BEFORE UPDATE OR DELETE ON "StockLedger"
    FOR EACH ROW EXECUTE FUNCTION internal.ledger_append_only();
CREATE OR REPLACE TRIGGER ledger_no_truncate
    BEFORE TRUNCATE ON "StockLedger"
    FOR EACH STATEMENT EXECUTE FUNCTION internal.ledger_append_only();

-- internal.product_guard_delete: BEFORE DELETE on "Product". Stands in for the foreign keys from
-- "CartItem" and "OrderItem" to "Product", which 0003 dropped: a foreign-key check takes FOR KEY
-- SHARE on the product row, and on a popular product every such lock taken beside a checkout's
-- UPDATE turns the row's lock into a MultiXact that the next buyer must resolve. Sold products
-- stay (their order history refers to them); cart lines go with the product.
-- Raises: MKS09 when an order refers to the product. Callers: the trigger only.
CREATE OR REPLACE FUNCTION internal.product_guard_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM "OrderItem" i WHERE i."productId" = OLD.id) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKS09', MESSAGE = 'a product that has been ordered cannot be deleted',
            DETAIL = jsonb_build_object('productId', OLD.id)::text,
            HINT = 'Set its stock to 0 instead.';
    END IF;
    DELETE FROM "CartItem" c WHERE c."productId" = OLD.id;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION internal.product_guard_delete() IS
    'Trigger: refuses to delete an ordered product and removes its cart lines (in place of foreign keys).';
REVOKE ALL ON FUNCTION internal.product_guard_delete() FROM PUBLIC;

CREATE OR REPLACE TRIGGER product_guard_delete
    BEFORE DELETE ON "Product"
    FOR EACH ROW EXECUTE FUNCTION internal.product_guard_delete();
