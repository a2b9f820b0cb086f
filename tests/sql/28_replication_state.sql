-- api.replication_state / app.replication_state: the node a session is on, for /health and the
-- dashboard (tests/test_ha.py checks the standbys on a real Patroni cluster).
BEGIN;
SELECT plan(7);

SELECT is(api.replication_state() ->> 'role', 'primary', 'a server not in recovery is a primary');
SELECT is(api.replication_state() -> 'inRecovery', 'false'::jsonb, 'and says it is not in recovery');
SELECT is(api.replication_state() ->> 'node', coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port'),
          'the node is the server''s address and port');
SELECT is(api.replication_state() ->> 'systemIdentifier', (SELECT system_identifier::text FROM pg_control_system()),
          'with the cluster''s system identifier');
SELECT is(jsonb_typeof(api.replication_state() -> 'standbys'), 'array', 'standbys is a list (empty without any)');
SELECT ok(has_function_privilege('marketplace_app', 'app.replication_state()', 'EXECUTE'),
          'the app''s role may read it through schema app');
SELECT ok(NOT has_function_privilege('marketplace_app', 'api.replication_state()', 'EXECUTE'),
          'but not call the api function');

SELECT * FROM finish();
ROLLBACK;
