-- api.error_codes: the one registry of the project's SQLSTATEs, and every MK code the functions
-- raise is in it.
BEGIN;
SELECT plan(8);

SELECT has_function('api', 'error_codes', ARRAY[]::name[]);
SELECT set_eq($$ SELECT sqlstate FROM api.error_codes() $$,
              ARRAY['MK400', 'MK401', 'MK403', 'MK404', 'MK409', 'MK503',
                    'MKV00', 'MKE00', 'MKS09', 'MKI22', 'MKC09', 'MKT29', 'MKQ09', 'MKU09', 'MKN03'],
              'the registry lists the project''s codes');
SELECT results_eq($$ SELECT sqlstate, code, http_status FROM api.error_codes()
                     WHERE sqlstate IN ('MK400', 'MK409', 'MK503') ORDER BY sqlstate $$,
                  $$ VALUES ('MK400', 'INSUFFICIENT_STOCK', 400), ('MK409', 'CONCURRENCY_CONFLICT', 409),
                            ('MK503', 'MAINTENANCE', 503) $$,
                  'the contract''s codes map to their HTTP status and stable names');
SELECT is((SELECT title FROM api.error_codes() WHERE sqlstate = 'MK400'), 'Stock insuficiente',
          'MK400 is titled "Stock insuficiente"');
SELECT is_empty($$ SELECT sqlstate FROM api.error_codes() WHERE sqlstate !~ '^MK[0-9A-Z]{3}$' $$,
                'every code is five characters in class MK');
SELECT is_empty($$ SELECT sqlstate FROM api.error_codes() GROUP BY 1 HAVING count(*) > 1
                   UNION ALL SELECT code FROM api.error_codes() GROUP BY 1 HAVING count(*) > 1 $$,
                'sqlstates and code names are unique');
SELECT is_empty($$ SELECT sqlstate FROM api.error_codes()
                   WHERE http_status NOT BETWEEN 400 AND 599 OR coalesce(title, '') = '' $$,
                'every code has an HTTP error status and a title');
-- Scan the source of every function in api and internal for ERRCODE = 'MK...'.
SELECT is_empty($$
    SELECT DISTINCT m[1] FROM pg_proc p, regexp_matches(p.prosrc, 'ERRCODE\s*=\s*''(MK[0-9A-Z]{3})''', 'g') AS m
    WHERE p.pronamespace IN ('api'::regnamespace, 'internal'::regnamespace)
    EXCEPT SELECT sqlstate FROM api.error_codes()
$$, 'every MK code raised by an api or internal function is in the registry');

SELECT * FROM finish();
ROLLBACK;
