-- api.error_codes: the one registry of the project's SQLSTATEs, and every MK code the functions
-- raise is in it.
BEGIN;
SELECT plan(16);

SELECT has_function('api', 'error_codes', ARRAY[]::name[]);
SELECT set_eq($$ SELECT sqlstate FROM api.error_codes() $$,
              ARRAY['MK400', 'MK401', 'MK403', 'MK404', 'MK409', 'MK503',
                    'MKV00', 'MKE00', 'MKS09', 'MKI22', 'MKC09', 'MKT29',
                    'MKW01', 'MKQ09', 'MKU09', 'MKN03'],
              'the registry lists the project''s codes');
SELECT results_eq($$ SELECT sqlstate, code, http_status FROM api.error_codes()
                     WHERE sqlstate IN ('MK400', 'MK409', 'MK503') ORDER BY sqlstate $$,
                  $$ VALUES ('MK400', 'INSUFFICIENT_STOCK', 400), ('MK409', 'CONCURRENCY_CONFLICT', 409),
                            ('MK503', 'MAINTENANCE', 503) $$,
                  'the contract''s codes map to their HTTP status and stable names');
SELECT results_eq($$ SELECT sqlstate, code, http_status FROM api.error_codes()
                     WHERE sqlstate IN ('MKT29', 'MKU09', 'MKW01') ORDER BY sqlstate $$,
                  $$ VALUES ('MKT29', 'TOO_MANY_ATTEMPTS', 429), ('MKU09', 'TOO_MANY_UNPAID_ORDERS', 409),
                            ('MKW01', 'INVALID_SIGNATURE', 401) $$,
                  'the codes of version 1.1: 429 for sign-up and login limits, TOO_MANY_UNPAID_ORDERS, 401 for a bad webhook signature');
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
-- Scan the source of every function in api, app and internal for ERRCODE = 'MK...'.
SELECT is_empty($$
    SELECT DISTINCT m[1] FROM pg_proc p, regexp_matches(p.prosrc, 'ERRCODE\s*=\s*''(MK[0-9A-Z]{3})''', 'g') AS m
    WHERE p.pronamespace IN ('api'::regnamespace, 'app'::regnamespace, 'internal'::regnamespace)
    EXCEPT SELECT sqlstate FROM api.error_codes()
$$, 'every MK code raised by an api, app or internal function is in the registry');

-- The HTTP policy per code (api.error_policy): what the app retries, what it answers, and when.
SELECT has_function('api', 'error_policy', ARRAY[]::name[]);
SELECT set_eq($$ SELECT sqlstate, code, http_status, title FROM api.error_policy() WHERE sqlstate LIKE 'MK%' $$,
              $$ SELECT sqlstate, code, http_status, title FROM api.error_codes() $$,
              'api.error_codes is the project''s part of the policy');
SELECT is_empty($$ SELECT sqlstate FROM api.error_policy()
                   WHERE retryable NOT IN ('yes', 'detail', 'no') OR retryable IS NULL
                      OR coalesce(description, '') = '' OR retry_after < 1 $$,
                'every code says whether it is retried, and has a description; Retry-After is at least 1');
SELECT results_eq($$ SELECT sqlstate, code, http_status, retryable, retry_after FROM api.error_policy()
                     WHERE sqlstate IN ('40001', '40P01', '55P03', 'MK409') ORDER BY sqlstate $$,
                  $$ VALUES ('40001', 'CONCURRENCY_CONFLICT', 409, 'yes', 1), ('40P01', 'CONCURRENCY_CONFLICT', 409, 'yes', 1),
                            ('55P03', 'CONCURRENCY_CONFLICT', 409, 'yes', 1), ('MK409', 'CONCURRENCY_CONFLICT', 409, 'detail', 1) $$,
                  'transient conflicts are retried; MK409 only when its DETAIL says so; both answer Retry-After: 1');
SELECT is_empty($$ SELECT sqlstate FROM api.error_policy() WHERE http_status IN (429, 503) AND retry_after IS NULL $$,
                'every 429 and 503 carries a Retry-After');
SELECT is_empty($$ SELECT sqlstate FROM api.error_policy() GROUP BY 1 HAVING count(*) > 1 $$,
                'each SQLSTATE has one policy');
SELECT ok(has_function_privilege('marketplace_app', 'app.error_policy()', 'EXECUTE'),
          'the app role loads the policy through app.error_policy');

SELECT * FROM finish();
ROLLBACK;
