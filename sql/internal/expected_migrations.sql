-- internal.expected_migrations: the yoyo migration ids this definition of the functions belongs
-- to, so api.integrity_report() can tell when a database lags behind its code. Derived from
-- migrations/: tools/sqlmig.py rewrites the list with each migration it writes (never by hand),
-- and `tools/sqlmig.py --check` and tests/sql/test_migrations.py fail when the two disagree.
-- Raises: nothing. Callers: api.integrity_report.
CREATE OR REPLACE FUNCTION internal.expected_migrations()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[
        '0001_initial_marketplace_schema',
        '0002_add_version_to_product',
        '0003_core_rules',
        '0004_api_functions',
        '0005_checkout_stats',
        '0006_login_throttle',
        '0007_checkout_uuid7_functions',
        '0008_time_ordered_ids',
        '0009_ops_input_checks',
        '0010_checkout_early_release',
        '0011_app_boundary_schema',
        '0012_app_boundary_functions',
        '0013_smoke_schema',
        '0014_smoke_functions',
        '0015_checkout_outcome_columns',
        '0016_report_verdict',
        '0017_plpgsql_check_clean',
        '0018_expiry_schedule',
        '0019_expiry_schedule_functions',
        '0020_catalogue_comments',
        '0021_error_policy',
        '0022_expiry_short_locks',
        '0023_replication_state',
        '0024_lean_checkout'
    ]
$$;
COMMENT ON FUNCTION internal.expected_migrations() IS
    'The migration ids the current functions expect to be applied; written from migrations/ by tools/sqlmig.py.';
REVOKE ALL ON FUNCTION internal.expected_migrations() FROM PUBLIC;
