-- api.health: the cheap state GET /health reports.
BEGIN;
SELECT plan(5);

SELECT is(api.health(), '{"database": "ok", "migrations": "ok", "migrationsMissing": [], "maintenance": false}'::jsonb,
          'a migrated database is healthy, with every migration applied and maintenance off');
SELECT api.set_maintenance(true);
SELECT is(api.health() -> 'maintenance', 'true'::jsonb, 'health reports maintenance mode');
SELECT lives_ok($$ SELECT api.health() $$, 'health works during maintenance');
DELETE FROM _yoyo_migration WHERE migration_id = '0004_api_functions';
SELECT is(api.health() ->> 'migrations', 'pending', 'a missing migration makes migrations pending');
SELECT is(api.health() -> 'migrationsMissing', '["0004_api_functions"]'::jsonb, 'and lists it');

SELECT * FROM finish();
ROLLBACK;
