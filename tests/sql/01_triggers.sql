-- Triggers on "Product" and "StockLedger": whoever writes (api or a DBA's plain UPDATE), every
-- UPDATE raises version by exactly 1 and stamps "updatedAt"; every stock change is appended to the
-- ledger with its reason, order and version after; the ledger is append-only; stock >= 0 holds.
BEGIN;
\ir lib/helpers.psql
SELECT plan(33);

CREATE TEMP TABLE fx AS SELECT pg_temp.mk_user('SELLER') AS seller;
-- A plain INSERT, as a DBA or the old ORM would do it, dated in the past so "updatedAt" can be seen to move.
INSERT INTO "Product" (id, name, price, stock, "sellerId", "createdAt", "updatedAt")
SELECT 'p-trig', 'Vase', 12.50, 5, seller, '2000-01-01', '2000-01-01' FROM fx;
INSERT INTO "Product" (id, name, price, stock, "sellerId")
SELECT 'p-zero', 'Bowl', 3, 0, seller FROM fx;

-- INSERT: version 1 and an OPENING_BALANCE (4)
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-trig'), 1, 'a new product has version 1');
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of('p-trig') $$,
                  $$ VALUES (5, 'OPENING_BALANCE', NULL::text, 1) $$,
                  'a new product''s stock opens its ledger as OPENING_BALANCE');
SELECT is_empty($$ SELECT * FROM pg_temp.ledger_of('p-zero') $$,
                'a product created with stock 0 has no ledger row (deltas are never 0)');
SELECT is((SELECT "updatedAt" FROM "Product" WHERE id = 'p-trig'), '2000-01-01'::timestamptz,
          'INSERT keeps the given "updatedAt"');

-- A DBA's UPDATE that does not touch stock (4)
UPDATE "Product" SET name = 'Vase II' WHERE id = 'p-trig';
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-trig'), 2, 'a plain UPDATE of the name raises version to 2');
SELECT is((SELECT "updatedAt" FROM "Product" WHERE id = 'p-trig'), now(), 'a plain UPDATE sets "updatedAt" to now()');
SELECT is((SELECT count(*)::int FROM "StockLedger" WHERE "productId" = 'p-trig'), 1,
          'an UPDATE that leaves stock alone writes no ledger row');
UPDATE "Product" SET stock = stock WHERE id = 'p-trig';
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-trig'), 3, 'even a no-op UPDATE raises version by 1');

-- Writers that try to set version or "updatedAt" themselves (4)
UPDATE "Product" SET "version" = 100 WHERE id = 'p-trig';
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-trig'), 4, 'setting version = 100 still yields old + 1');
UPDATE "Product" SET "version" = 1 WHERE id = 'p-trig';
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-trig'), 5, 'setting version back to 1 still yields old + 1');
UPDATE "Product" SET "updatedAt" = '1999-01-01' WHERE id = 'p-trig';
SELECT is((SELECT "updatedAt" FROM "Product" WHERE id = 'p-trig'), now(), 'an explicit old "updatedAt" is overridden with now()');
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-trig'), 6, 'and version rose by 1 again');

-- One statement over several rows: each row +1 (2)
UPDATE "Product" SET price = price + 1 WHERE id IN ('p-trig', 'p-zero');
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-trig'), 7, 'multi-row UPDATE: first row +1');
SELECT is((SELECT "version" FROM "Product" WHERE id = 'p-zero'), 2, 'multi-row UPDATE: second row +1');

-- Stock changes reach the ledger (5)
UPDATE "Product" SET stock = 3 WHERE id = 'p-trig';
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of('p-trig') ORDER BY version_after DESC LIMIT 1 $$,
                  $$ VALUES (-2, 'ADJUSTMENT', NULL::text, 8) $$,
                  'a DBA''s plain stock UPDATE is an ADJUSTMENT with the version after');
SELECT is((SELECT "stockAfter" FROM "StockLedger" WHERE "productId" = 'p-trig' ORDER BY id DESC LIMIT 1), 3,
          'the ledger row records the stock after');
SELECT set_config('mk.stock_reason', 'CANCEL', true), set_config('mk.order_id', 'order-x', true);
UPDATE "Product" SET stock = stock + 4 WHERE id = 'p-trig';
SELECT set_config('mk.stock_reason', '', true), set_config('mk.order_id', '', true);
SELECT results_eq($$ SELECT * FROM pg_temp.ledger_of('p-trig') ORDER BY version_after DESC LIMIT 1 $$,
                  $$ VALUES (4, 'CANCEL', 'order-x', 9) $$,
                  'reason and order come from mk.stock_reason and mk.order_id');
UPDATE "Product" SET stock = stock + 1 WHERE id = 'p-trig';
SELECT is((SELECT reason FROM "StockLedger" WHERE "productId" = 'p-trig' ORDER BY id DESC LIMIT 1), 'ADJUSTMENT',
          'an emptied mk.stock_reason falls back to ADJUSTMENT');
SELECT is(pg_temp.ledger_sum('p-trig'), pg_temp.stock_of('p-trig'), 'sum of the ledger equals the stock');

-- A reason outside the ledger's list is refused, together with the stock change (2)
SELECT set_config('mk.stock_reason', 'GIFT', true);
SELECT throws_ok($$ UPDATE "Product" SET stock = stock + 1 WHERE id = 'p-trig' $$, '23514', NULL,
                 'an unknown ledger reason fails the ledger CHECK');
SELECT set_config('mk.stock_reason', '', true);
SELECT is(pg_temp.stock_of('p-trig'), 8, 'and the stock did not change');

-- One UPDATE that returns several orders' units (internal.return_stock) is split into one ledger
-- row per order, each with the stock after it; a split that does not match is refused (6)
SELECT set_config('mk.stock_split', '{"p": "p-trig", "rows": [["o-1", 2, "EXPIRED"], ["o-2", 3, "PAYMENT_FAILED_EXPIRED"]]}', true);
UPDATE "Product" SET stock = stock + 5 WHERE id = 'p-trig';
SELECT set_config('mk.stock_split', '', true);
SELECT results_eq($$ SELECT delta, reason, "orderId", "stockAfter", "versionAfter" = (SELECT "version" FROM "Product" WHERE id = 'p-trig')
                     FROM "StockLedger" WHERE "productId" = 'p-trig' ORDER BY id DESC LIMIT 2 $$,
                  $$ VALUES (3, 'PAYMENT_FAILED_EXPIRED', 'o-2', 13, true), (2, 'EXPIRED', 'o-1', 10, true) $$,
                  'a split update writes one row per order, in order, each with the stock after it');
SELECT is(pg_temp.ledger_sum('p-trig'), pg_temp.stock_of('p-trig'), 'after a split, the ledger still sums to the stock');
SELECT set_config('mk.stock_split', '{"p": "p-trig", "rows": [["o-1", 2, "EXPIRED"]]}', true);
SELECT throws_ok($$ UPDATE "Product" SET stock = stock + 3 WHERE id = 'p-trig' $$, 'MKS09', NULL,
                 'a split whose units do not add up to the change is refused');
SELECT set_config('mk.stock_split', '{"p": "p-zero", "rows": [["o-1", 3, "EXPIRED"]]}', true);
SELECT throws_ok($$ UPDATE "Product" SET stock = stock + 3 WHERE id = 'p-trig' $$, 'MKS09', NULL,
                 'a split that names another product is refused');
SELECT set_config('mk.stock_split', '', true);
SELECT is(pg_temp.stock_of('p-trig'), 13, 'and the refused updates left the stock as it was');
UPDATE "Product" SET stock = stock - 5 WHERE id = 'p-trig';
SELECT is((SELECT reason FROM "StockLedger" WHERE "productId" = 'p-trig' ORDER BY id DESC LIMIT 1), 'ADJUSTMENT',
          'with the split cleared, a change is one row again');

-- "StockLedger" is append-only (3)
SELECT throws_ok($$ UPDATE "StockLedger" SET delta = delta + 1 $$, 'MKS09', NULL, 'UPDATE of "StockLedger" raises MKS09');
SELECT throws_ok($$ DELETE FROM "StockLedger" $$, 'MKS09', NULL, 'DELETE from "StockLedger" raises MKS09');
SELECT throws_ok($$ TRUNCATE "StockLedger" $$, 'MKS09', NULL, 'TRUNCATE of "StockLedger" raises MKS09');

-- CHECK (stock >= 0) is the last line of defence (3)
SELECT throws_ok($$ UPDATE "Product" SET stock = -1 WHERE id = 'p-trig' $$, '23514', NULL,
                 'a negative stock violates the CHECK (23514)');
SELECT throws_ok($$ INSERT INTO "Product" (name, price, stock, "sellerId")
                    SELECT 'Bad', 1, -5, seller FROM fx $$, '23514', NULL,
                 'a product cannot be inserted with negative stock');
SELECT is(pg_temp.stock_of('p-trig'), 8, 'the refused UPDATE left the stock as it was');

SELECT * FROM finish();
ROLLBACK;
