-- Structure: the contract's schemas, tables and functions exist with the agreed signatures, every
-- api function is documented, SECURITY DEFINER with a pinned search_path, executable by the app's
-- role and by nobody else, and the app's role can touch no table and no internal helper.
BEGIN;
SELECT plan(141);

-- The api functions and their argument types. Adding a function to api means adding it here
-- (functions_are below fails until then) and giving it a test file.
-- app_execute: whether marketplace_app may call it. Two exceptions by design (sql/api/auth.sql):
-- api.create_user can create an ADMIN, so only DBAs and the CLI may call it; api.login_credentials
-- hands out password hashes, so the app reaches it only through the throttle of api.begin_login.
CREATE TEMP TABLE api_sig (fn name, args name[], app_execute boolean DEFAULT true);
INSERT INTO api_sig (fn, args) VALUES
    ('add_to_cart',           ARRAY['text', 'text', 'integer']),
    ('authenticate',          ARRAY['text', 'text']),
    ('begin_login',           ARRAY['text', 'text']),
    ('cancel_order',          ARRAY['text', 'text', 'text']),
    ('checkout',              ARRAY['text', 'jsonb', 'text']),
    ('checkout_report',       ARRAY['interval']),
    ('create_product',        ARRAY['text', 'text', 'numeric', 'integer', 'text', 'integer']),
    ('dashboard_stats',       ARRAY['interval']),
    ('decrement_stock',       ARRAY['text', 'integer', 'integer', 'text', 'text']),
    ('error_codes',           ARRAY[]::name[]),
    ('evaluate_alerts',       ARRAY['interval', 'interval', 'bigint', 'bigint', 'bigint', 'bigint']),
    ('expire_pending_orders', ARRAY['interval', 'integer']),
    ('get_cart',              ARRAY['text']),
    ('get_order',             ARRAY['text', 'text']),
    ('get_product',           ARRAY['text']),
    ('health',                ARRAY[]::name[]),
    ('integrity_report',      ARRAY['interval']),
    ('issue_token',           ARRAY['text', 'text', 'interval']),
    ('list_orders',           ARRAY['text', 'integer']),
    ('list_products',         ARRAY['integer', 'text']),
    ('maintenance_status',    ARRAY[]::name[]),
    ('ops_snapshot',          ARRAY['interval']),
    ('payment_webhook',       ARRAY['text', 'text', 'boolean', 'text']),
    ('record_checkout_stats', ARRAY['jsonb']),
    ('record_payment',        ARRAY['text', 'boolean', 'text']),
    ('register_user',         ARRAY['text', 'text', 'text', 'text']),
    ('remove_from_cart',      ARRAY['text', 'text']),
    ('revoke_token',          ARRAY['text']),
    ('set_cart_quantity',     ARRAY['text', 'text', 'integer']),
    ('set_maintenance',       ARRAY['boolean']),
    ('update_product',        ARRAY['text', 'integer', 'jsonb', 'text']);
-- api.expiry_failures is for operators (verify, alerts, /metrics go through the owner).
INSERT INTO api_sig VALUES ('create_user', ARRAY['text', 'text', 'text', 'text'], false),
                           ('expiry_failures', ARRAY[]::name[], false),
                           ('login_credentials', ARRAY['text'], false);

-- Schemas and tables (2 + 6)
SELECT has_schema('api');
SELECT has_schema('internal');
SELECT has_table('public', 'User', 'table "User" exists');
SELECT has_table('public', 'Product', 'table "Product" exists');
SELECT has_table('public', 'CartItem', 'table "CartItem" exists');
SELECT has_table('public', 'Order', 'table "Order" exists');
SELECT has_table('public', 'OrderItem', 'table "OrderItem" exists');
SELECT has_table('public', 'StockLedger', 'table "StockLedger" exists');

-- "Product".version and stock (6)
SELECT has_column('public', 'Product', 'version', '"Product".version exists');
SELECT col_type_is('public', 'Product', 'version', 'integer', '"Product".version is integer');
SELECT col_not_null('public', 'Product', 'version', '"Product".version is NOT NULL');
SELECT col_default_is('public', 'Product', 'version', '1', '"Product".version defaults to 1');
SELECT col_not_null('public', 'Product', 'stock', '"Product".stock is NOT NULL');
SELECT col_has_check('public', 'Product', 'stock', '"Product".stock has a CHECK constraint');

-- Triggers (5)
SELECT has_trigger('public', 'Product', 'product_bump_version', 'version trigger on "Product"');
SELECT has_trigger('public', 'Product', 'product_stock_ledger_insert', 'ledger insert trigger on "Product"');
SELECT has_trigger('public', 'Product', 'product_stock_ledger_update', 'ledger update trigger on "Product"');
SELECT has_trigger('public', 'StockLedger', 'ledger_append_only', 'append-only trigger on "StockLedger"');
SELECT has_trigger('public', 'StockLedger', 'ledger_no_truncate', 'no-truncate trigger on "StockLedger"');

-- Exactly the listed functions, with the listed signatures (1 + 34)
SELECT functions_are('api', ARRAY(SELECT fn FROM api_sig ORDER BY fn),
                     'schema api holds exactly the functions this file knows');
SELECT has_function('api', fn, args, format('api.%s(%s) exists', fn, array_to_string(args, ', ')))
FROM api_sig ORDER BY fn;

-- Privileges, function by function (34 + 34)
SELECT function_privs_are('api', fn, args, 'marketplace_app',
                          CASE WHEN app_execute THEN ARRAY['EXECUTE'] ELSE ARRAY[]::name[] END,
                          format('marketplace_app %s execute api.%s', CASE WHEN app_execute THEN 'may' ELSE 'may not' END, fn))
FROM api_sig ORDER BY fn;
SELECT function_privs_are('api', fn, args, 'public', ARRAY[]::name[],
                          format('PUBLIC may not execute api.%s', fn))
FROM api_sig ORDER BY fn;

-- Every api function, whatever its name (5)
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace AND NOT p.prosecdef
$$, 'every api function is SECURITY DEFINER');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                      WHERE c ~ '^search_path=pg_catalog(, *[a-z_]+)*, *pg_temp$')
$$, 'every api function pins search_path (pg_catalog first, pg_temp last)');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace
      AND coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''
$$, 'every api function has a COMMENT');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace
      AND NOT has_function_privilege('marketplace_app', p.oid, 'EXECUTE')
      AND p.proname NOT IN ('create_user', 'login_credentials')
$$, 'marketplace_app may execute every api function but api.create_user and api.login_credentials');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
$$, 'PUBLIC may execute no api function');

-- Tables: the app's role holds no privilege on any of them (7 + 1)
SELECT table_privs_are('public', t, 'marketplace_app', ARRAY[]::name[],
                       format('marketplace_app has no privilege on "%s"', t))
FROM unnest(ARRAY['User', 'Product', 'CartItem', 'Order', 'OrderItem', 'StockLedger', 'ApiToken']) AS t;
SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace IN ('public'::regnamespace, 'internal'::regnamespace)
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      -- pgTAP's own views are granted to PUBLIC; they are the test harness, not the project
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
      AND (has_table_privilege('marketplace_app', c.oid,
                               'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
           OR has_any_column_privilege('marketplace_app', c.oid, 'SELECT, INSERT, UPDATE, REFERENCES'))
    UNION ALL
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace IN ('public'::regnamespace, 'internal'::regnamespace)
      AND CASE WHEN c.relkind = 'S'  -- has_sequence_privilege errors on anything else
               THEN has_sequence_privilege('marketplace_app', c.oid, 'USAGE, SELECT, UPDATE') END
$$, 'marketplace_app has no privilege on any table, view or sequence of public or internal');

-- Schemas and internal helpers (2 + 2)
SELECT schema_privs_are('api', 'marketplace_app', ARRAY['USAGE'], 'marketplace_app may only use schema api');
SELECT schema_privs_are('internal', 'marketplace_app', ARRAY[]::name[], 'marketplace_app may not use schema internal');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'internal'::regnamespace
      AND has_function_privilege('marketplace_app', p.oid, 'EXECUTE')
$$, 'marketplace_app may execute no internal function');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'internal'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
$$, 'PUBLIC may execute no internal function');

-- The app's role itself (2)
SELECT has_role('marketplace_app');
SELECT ok(NOT rolsuper AND NOT rolcreaterole AND NOT rolcreatedb AND NOT rolbypassrls,
          'marketplace_app is an ordinary role (no superuser, createrole, createdb, bypassrls)')
FROM pg_roles WHERE rolname = 'marketplace_app';

SELECT * FROM finish();
ROLLBACK;
