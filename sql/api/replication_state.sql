-- api.replication_state: the node this session is on and its replication state, for /health, the
-- dashboard and DBAs on a Patroni cluster (docs/runbook.md, "Failover"): address and port, role
-- (primary or standby), the cluster's system identifier, synchronous_standby_names and
-- synchronous_commit; on a primary each standby's name, state, sync state and lag (bytes behind
-- the current WAL position, and replay lag in seconds); on a standby how long ago it replayed
-- the last transaction. The standbys' details come from pg_stat_replication, which shows them to
-- members of pg_read_all_stats (the owner here is one, as a superuser or by grant).
-- Raises: nothing. Callers: app.replication_state (GET /health, the dashboard), DBAs.
CREATE OR REPLACE FUNCTION api.replication_state()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'node', coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port'),
        'role', CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END,
        'inRecovery', pg_is_in_recovery(),
        'systemIdentifier', (SELECT c.system_identifier::text FROM pg_control_system() c),
        'synchronousStandbyNames', current_setting('synchronous_standby_names'),
        'synchronousCommit', current_setting('synchronous_commit'),
        'standbys', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'name', r.application_name, 'state', r.state, 'syncState', r.sync_state,
                       'lagBytes', CASE WHEN pg_is_in_recovery() THEN NULL
                                        ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn) END,
                       'replayLagSeconds', extract(epoch FROM r.replay_lag))
                   ORDER BY r.application_name)
            FROM pg_stat_replication r), '[]'::jsonb),
        'replayDelaySeconds', CASE WHEN pg_is_in_recovery()
                                   THEN round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 3) END)
$$;
COMMENT ON FUNCTION api.replication_state() IS
    'The node this session is on (address, role, system identifier) and its standbys with sync state and lag.';
REVOKE ALL ON FUNCTION api.replication_state() FROM PUBLIC;
