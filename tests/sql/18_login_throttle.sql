-- Login throttling: api.begin_login (per email and per client address, sliding 15-minute window)
-- and api.issue_token clearing the account's failures.
BEGIN;
\ir lib/helpers.psql
SELECT plan(19);

CREATE TEMP TABLE u AS SELECT api.create_user('Ana@Test.invalid', 'Ana', repeat('h', 40)) AS j;

-- Credentials and recording (4)
SELECT results_eq($$ SELECT user_id, role FROM api.begin_login(' ana@TEST.invalid', '10.0.0.1') $$,
                  $$ SELECT j ->> 'id', 'BUYER'::text FROM u $$,
                  'begin_login returns the user''s id and role, finding the email case-insensitively');
SELECT is_empty($$ SELECT * FROM api.begin_login('nobody@test.invalid', '10.0.0.1') $$,
                'an unknown email gives no row');
SELECT is((SELECT count(*)::int FROM internal.login_attempt WHERE client = '10.0.0.1'), 2,
          'each admitted attempt is recorded');
SELECT is((SELECT array_agg(DISTINCT email ORDER BY email) FROM internal.login_attempt),
          ARRAY['ana@test.invalid', 'nobody@test.invalid'], 'by its lower-cased, trimmed email');

-- Per email: 5 failures in the window, then MKT29 (5)
SELECT api.begin_login('ana@test.invalid', '10.0.0.' || i) FROM generate_series(2, 5) AS i;
SELECT throws_ok($$ SELECT api.begin_login('ANA@test.invalid', '10.0.0.9') $$, 'MKT29', NULL,
                 'the sixth attempt on an email within 15 minutes is MKT29, from any address');
SELECT is(pg_temp.error_of($$ SELECT api.begin_login('ana@test.invalid', '10.0.0.9') $$) -> 'detail',
          '{"retryAfter": 900}'::jsonb, 'its DETAIL says when the window frees a slot');
SELECT is((SELECT count(*)::int FROM internal.login_attempt WHERE email = 'ana@test.invalid'), 5,
          'a refused attempt is not recorded');
UPDATE internal.login_attempt SET attempted_at = now() - interval '10 minutes'
WHERE id = (SELECT min(id) FROM internal.login_attempt WHERE email = 'ana@test.invalid');
SELECT is(pg_temp.error_of($$ SELECT api.begin_login('ana@test.invalid', '10.0.0.9') $$) -> 'detail' -> 'retryAfter',
          '300'::jsonb, 'retryAfter counts from the oldest failure that must leave the window');
UPDATE internal.login_attempt SET attempted_at = now() - interval '15 minutes'
WHERE id = (SELECT min(id) FROM internal.login_attempt WHERE email = 'ana@test.invalid');
SELECT lives_ok($$ SELECT api.begin_login('ana@test.invalid', '10.0.0.9') $$,
                'a failure older than 15 minutes no longer counts');

-- Unknown emails are throttled alike (1)
SELECT api.begin_login('nobody@test.invalid', '10.0.1.' || i) FROM generate_series(1, 4) AS i;
SELECT throws_ok($$ SELECT api.begin_login('nobody@test.invalid', '10.0.1.9') $$, 'MKT29', NULL,
                 'an unknown email is throttled like a registered one');

-- Success clears the account (4)
SELECT lives_ok($$ SELECT api.issue_token((SELECT j ->> 'id' FROM u), repeat('a', 64)) $$, 'a token is issued');
SELECT is((SELECT count(*)::int FROM internal.login_attempt WHERE email = 'ana@test.invalid'), 0,
          'issue_token deletes the account''s attempts');
SELECT is((SELECT count(*)::int FROM internal.login_attempt WHERE email = 'nobody@test.invalid'), 5,
          'and no one else''s');
SELECT lives_ok($$ SELECT api.begin_login('ana@test.invalid', '10.0.0.9') $$, 'the account may try again');

-- Per client address: 20 failures, then MKT29 whatever the email (3)
SELECT api.begin_login('user' || i || '@test.invalid', '192.0.2.7') FROM generate_series(1, 20) AS i;
SELECT throws_ok($$ SELECT api.begin_login('ana@test.invalid', '192.0.2.7') $$, 'MKT29', NULL,
                 'the 21st attempt from one address within 15 minutes is MKT29, for any email');
SELECT lives_ok($$ SELECT api.begin_login('ana@test.invalid', '192.0.2.8') $$, 'another address is not throttled');
SELECT is(pg_temp.error_of($$ SELECT api.begin_login('user99@test.invalid', '192.0.2.7') $$) ->> 'sqlstate',
          'MKT29', 'a new email from the throttled address is refused too');

-- Arguments (2)
SELECT throws_ok($$ SELECT api.begin_login(NULL, '10.0.0.1') $$, 'MKV00', NULL, 'no email is MKV00');
SELECT lives_ok($$ SELECT api.begin_login('x@test.invalid', NULL) $$, 'no address is one shared bucket, not an error');

SELECT * FROM finish();
ROLLBACK;
