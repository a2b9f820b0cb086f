-- Structure: the contract's schemas, tables and functions exist with the agreed signatures; every
-- api and app function is documented, SECURITY DEFINER with a pinned search_path; the app's role
-- may execute the functions of schema app and nothing else: no api function (they take user,
-- actor and seller ids), no internal helper, no table.
BEGIN;
SELECT plan(147);

-- The api functions (DBAs and the owner) and their argument types. Adding a function to api means
-- adding it here (functions_are below fails until then) and giving it a test file.
CREATE TEMP TABLE api_sig (fn name, args name[]);
INSERT INTO api_sig (fn, args) VALUES
    ('add_to_cart',           ARRAY['text', 'text', 'integer']),
    ('authenticate',          ARRAY['text', 'text']),
    ('cancel_order',          ARRAY['text', 'text', 'text']),
    ('checkout',              ARRAY['text', 'jsonb', 'text']),
    ('checkout_report',       ARRAY['interval']),
    ('create_product',        ARRAY['text', 'text', 'numeric', 'integer', 'text', 'integer']),
    ('create_user',           ARRAY['text', 'text', 'text', 'text']),
    ('dashboard_stats',       ARRAY['interval']),
    ('decrement_stock',       ARRAY['text', 'integer', 'integer', 'text', 'text']),
    ('deploy_verdict',        ARRAY['interval', 'integer']),
    ('error_codes',           ARRAY[]::name[]),
    ('error_policy',          ARRAY[]::name[]),
    ('evaluate_alerts',       ARRAY['interval', 'interval', 'bigint', 'bigint', 'bigint', 'bigint']),
    ('expire_pending_orders', ARRAY['interval', 'integer']),
    ('expiry_failures',       ARRAY[]::name[]),
    ('expiry_status',         ARRAY[]::name[]),
    ('get_cart',              ARRAY['text']),
    ('get_order',             ARRAY['text', 'text']),
    ('get_product',           ARRAY['text']),
    ('health',                ARRAY[]::name[]),
    ('integrity_report',      ARRAY['interval']),
    ('issue_token',           ARRAY['text', 'text', 'interval']),
    ('lift_login_throttle',   ARRAY['text', 'text']),
    ('limits',                ARRAY[]::name[]),
    ('list_orders',           ARRAY['text', 'integer']),
    ('list_products',         ARRAY['integer', 'text']),
    ('login_credentials',     ARRAY['text']),
    ('maintenance_status',    ARRAY[]::name[]),
    ('ops_snapshot',          ARRAY['interval']),
    ('record_checkout_stats', ARRAY['jsonb']),
    ('record_expiry_run',     ARRAY['text', 'integer', 'interval']),
    ('record_payment',        ARRAY['text', 'boolean', 'text']),
    ('register_user',         ARRAY['text', 'text', 'text', 'text']),
    ('remove_from_cart',      ARRAY['text', 'text']),
    ('replication_state',     ARRAY[]::name[]),
    ('retire_webhook_secrets', ARRAY[]::name[]),
    ('revoke_token',          ARRAY['text']),
    ('schedule_expiry',       ARRAY['integer', 'interval', 'integer']),
    ('set_cart_quantity',     ARRAY['text', 'text', 'integer']),
    ('set_limits',            ARRAY['jsonb']),
    ('set_maintenance',       ARRAY['boolean']),
    ('set_webhook_secret',    ARRAY['text']),
    ('smoke_prepare',         ARRAY[]::name[]),
    ('unschedule_expiry',     ARRAY[]::name[]),
    ('update_product',        ARRAY['text', 'integer', 'jsonb', 'text']),
    ('webhook_secrets',       ARRAY[]::name[]);

-- The app functions: the whole of what marketplace_app may execute. A token hash comes first
-- wherever a user is concerned; none takes a user, actor, seller or buyer id.
CREATE TEMP TABLE app_sig (fn name, args name[]);
INSERT INTO app_sig (fn, args) VALUES
    ('add_to_cart',           ARRAY['text', 'text', 'integer']),
    ('cancel_order',          ARRAY['text', 'text']),
    ('check_registration',    ARRAY['text']),
    ('checkout',              ARRAY['text', 'jsonb', 'text']),
    ('create_product',        ARRAY['text', 'text', 'numeric', 'integer', 'text', 'integer']),
    ('dashboard_stats',       ARRAY['text', 'interval']),
    ('error_codes',           ARRAY[]::name[]),
    ('error_policy',          ARRAY[]::name[]),
    ('get_cart',              ARRAY['text']),
    ('get_order',             ARRAY['text', 'text']),
    ('get_product',           ARRAY['text']),
    ('health',                ARRAY[]::name[]),
    ('list_orders',           ARRAY['text', 'integer']),
    ('list_products',         ARRAY['integer', 'text']),
    ('login',                 ARRAY['text', 'text', 'text', 'text']),
    ('login_parameters',      ARRAY['text', 'text']),
    ('logout',                ARRAY['text']),
    ('ops_snapshot',          ARRAY['interval']),
    ('payment_webhook',       ARRAY['text', 'text', 'bytea']),
    ('record_checkout_stats', ARRAY['jsonb']),
    ('register',              ARRAY['text', 'text', 'text', 'text', 'text']),
    ('remove_from_cart',      ARRAY['text', 'text']),
    ('replication_state',     ARRAY[]::name[]),
    ('set_cart_quantity',     ARRAY['text', 'text', 'integer']),
    ('set_maintenance',       ARRAY['text', 'boolean']),
    ('update_product',        ARRAY['text', 'text', 'integer', 'jsonb']);

SELECT has_schema('app');
-- Schemas and tables (3 + 6)
SELECT has_schema('api');
SELECT has_schema('internal');
SELECT has_table('public', 'User', 'table "User" exists');
SELECT has_table('public', 'Product', 'table "Product" exists');
SELECT has_table('public', 'CartItem', 'table "CartItem" exists');
SELECT has_table('public', 'Order', 'table "Order" exists');
SELECT has_table('public', 'OrderItem', 'table "OrderItem" exists');
SELECT has_table('public', 'StockLedger', 'table "StockLedger" exists');

-- "Product".version, stock and maxPerBuyer (7)
SELECT has_column('public', 'Product', 'maxPerBuyer', '"Product"."maxPerBuyer" exists');
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

-- Exactly the listed functions, with the listed signatures (1 + one per api function, 1 + 24)
SELECT functions_are('api', ARRAY(SELECT fn FROM api_sig ORDER BY fn),
                     'schema api holds exactly the functions this file knows');
SELECT has_function('api', fn, args, format('api.%s(%s) exists', fn, array_to_string(args, ', ')))
FROM api_sig ORDER BY fn;
SELECT functions_are('app', ARRAY(SELECT fn FROM app_sig ORDER BY fn),
                     'schema app holds exactly the functions this file knows');
SELECT has_function('app', fn, args, format('app.%s(%s) exists', fn, array_to_string(args, ', ')))
FROM app_sig ORDER BY fn;

-- Privileges (1 + 1, 24 + 1)
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace AND has_function_privilege('marketplace_app', p.oid, 'EXECUTE')
$$, 'marketplace_app may execute no api function');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
$$, 'PUBLIC may execute no api function');
SELECT function_privs_are('app', fn, args, 'marketplace_app', ARRAY['EXECUTE'],
                          format('marketplace_app may execute app.%s', fn))
FROM app_sig ORDER BY fn;
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'app'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
$$, 'PUBLIC may execute no app function');

-- Every api and app function, whatever its name (2 + 2 + 2 + 1)
SELECT is_empty(format($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = %L::regnamespace AND NOT p.prosecdef
$$, s), format('every %s function is SECURITY DEFINER', s)) FROM unnest(ARRAY['api', 'app']) AS s;
SELECT is_empty(format($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = %L::regnamespace
      AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                      WHERE c ~ '^search_path=pg_catalog(, *[a-z_]+)*, *pg_temp$')
$$, s), format('every %s function pins search_path (pg_catalog first, pg_temp last)', s))
FROM unnest(ARRAY['api', 'app']) AS s;
SELECT is_empty(format($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = %L::regnamespace
      AND coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''
$$, s), format('every %s function has a COMMENT', s)) FROM unnest(ARRAY['api', 'app']) AS s;
SELECT is_empty($$
    SELECT p.oid::regprocedure::text || ': ' || a FROM pg_proc p, unnest(p.proargnames) AS a
    WHERE p.pronamespace = 'app'::regnamespace AND a ~* '(user|actor|seller|buyer)_?id'
$$, 'no app function takes a user, actor, seller or buyer id');

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

-- Schemas and internal helpers (5 + 2)
SELECT schema_privs_are('app', 'marketplace_app', ARRAY['USAGE'], 'marketplace_app may only use schema app');
SELECT schema_privs_are('api', 'marketplace_app', ARRAY[]::name[], 'marketplace_app may not use schema api');
SELECT ok(NOT has_schema_privilege('marketplace_app', 'public', 'CREATE')
          AND NOT has_schema_privilege('public', 'public', 'CREATE'),
          'neither PUBLIC nor marketplace_app may create objects in schema public');
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
