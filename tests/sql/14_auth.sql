-- Users and bearer tokens: api.create_user, api.register_user, api.login_credentials,
-- api.issue_token, api.revoke_token, api.authenticate.
BEGIN;
\ir lib/helpers.psql
SELECT plan(33);

CREATE TEMP TABLE h AS SELECT repeat('h', 40) AS pw, repeat('a', 64) AS t1, repeat('b', 64) AS t2,
                              repeat('c', 64) AS t3, repeat('d', 64) AS t4;

-- create_user (8)
CREATE TEMP TABLE u AS SELECT api.create_user('  Maria@Test.invalid ', ' Maria ', pw, 'ADMIN') AS j FROM h;
SELECT is((SELECT j ->> 'email' FROM u), 'Maria@Test.invalid', 'create_user trims the email');
SELECT is((SELECT j ->> 'role' FROM u), 'ADMIN', 'create_user may create an ADMIN');
SELECT is((SELECT "passwordHash" FROM "User" WHERE id = (SELECT j ->> 'id' FROM u)), (SELECT pw FROM h),
          'the given hash is stored as is');
SELECT throws_ok($$ SELECT api.create_user('maria@test.INVALID', 'Other', (SELECT pw FROM h)) $$, 'MKC09', NULL,
                 'an email taken in another case is MKC09');
SELECT throws_ok($$ SELECT api.create_user('not-an-email', 'X', (SELECT pw FROM h)) $$, 'MKV00', NULL, 'a bad email is MKV00');
SELECT throws_ok($$ SELECT api.create_user('x@test.invalid', '  ', (SELECT pw FROM h)) $$, 'MKV00', NULL, 'a blank name is MKV00');
SELECT throws_ok($$ SELECT api.create_user('x@test.invalid', 'X', 'short') $$, 'MKV00', NULL, 'a short hash is MKV00');
SELECT throws_ok($$ SELECT api.create_user('x@test.invalid', 'X', (SELECT pw FROM h), 'ROOT') $$, 'MKV00', NULL,
                 'an unknown role is MKV00');

-- register_user (6)
CREATE TEMP TABLE b AS SELECT api.register_user('buyer@test.invalid', 'Buyer', pw) AS j FROM h;
SELECT is((SELECT j ->> 'role' FROM b), 'BUYER', 'register_user makes a BUYER by default');
CREATE TEMP TABLE s AS SELECT api.register_user('seller@test.invalid', 'Seller', pw, 'SELLER') AS j FROM h;
SELECT is((SELECT j ->> 'role' FROM s), 'SELLER', 'or a SELLER');
SELECT throws_ok($$ SELECT api.register_user('boss@test.invalid', 'Boss', (SELECT pw FROM h), 'ADMIN') $$, 'MK403', NULL,
                 'nobody registers as ADMIN (MK403)');
SELECT throws_ok($$ SELECT api.register_user('boss@test.invalid', 'Boss', (SELECT pw FROM h), 'ROOT') $$, 'MKV00', NULL,
                 'an unknown role is MKV00');
SELECT throws_ok($$ SELECT api.register_user('BUYER@test.invalid', 'Again', (SELECT pw FROM h)) $$, 'MKC09', NULL,
                 'a taken email is MKC09');
SELECT is((SELECT count(*)::int FROM "User" WHERE email ILIKE 'boss@%'), 0, 'refused registrations create no user');

-- login_credentials (2)
SELECT results_eq($$ SELECT * FROM api.login_credentials('  BUYER@test.invalid') $$,
                  $$ SELECT j ->> 'id', 'BUYER'::text, pw FROM b, h $$,
                  'login_credentials finds the user by email, case-insensitively, with role and hash');
SELECT is_empty($$ SELECT * FROM api.login_credentials('nobody@test.invalid') $$, 'an unknown email gives no row');

-- issue_token (6)
SELECT is((SELECT (api.issue_token(b.j ->> 'id', t1) ->> 'expiresAt')::timestamptz FROM b, h), now() + interval '24 hours',
          'issue_token stores a token valid for 24 hours by default');
SELECT is((SELECT "expiresAt" FROM "ApiToken" WHERE "tokenHash" = (SELECT t1 FROM h)), now() + interval '24 hours',
          'the token is stored by its hash');
SELECT throws_ok($$ SELECT api.issue_token((SELECT j ->> 'id' FROM b), upper((SELECT t2 FROM h))) $$, 'MKV00', NULL,
                 'a hash that is not 64 lowercase hex digits is MKV00');
SELECT throws_ok($$ SELECT api.issue_token((SELECT j ->> 'id' FROM b), (SELECT t2 FROM h), '30 seconds') $$, 'MKV00', NULL,
                 'a lifetime under a minute is MKV00');
SELECT throws_ok($$ SELECT api.issue_token((SELECT j ->> 'id' FROM b), (SELECT t2 FROM h), '31 days') $$, 'MKV00', NULL,
                 'a lifetime over 30 days is MKV00');
SELECT throws_ok($$ SELECT api.issue_token('no-such-user', (SELECT t2 FROM h)) $$, 'MK404', NULL, 'an unknown user is MK404');

-- authenticate (8)
SELECT api.issue_token(s.j ->> 'id', t2), api.issue_token(u.j ->> 'id', t3), api.issue_token(b.j ->> 'id', t4, '1 minute')
FROM s, u, b, h;
SELECT is(api.authenticate((SELECT t1 FROM h)), (SELECT j ->> 'id' FROM b), 'authenticate returns the token''s user');
SELECT is(api.authenticate((SELECT t2 FROM h), 'SELLER'), (SELECT j ->> 'id' FROM s), 'a SELLER passes a SELLER check');
SELECT throws_ok($$ SELECT api.authenticate((SELECT t1 FROM h), 'SELLER') $$, 'MK403', NULL,
                 'a BUYER fails a SELLER check (MK403)');
SELECT is(api.authenticate((SELECT t3 FROM h), 'SELLER'), (SELECT j ->> 'id' FROM u), 'an ADMIN satisfies any role');
SELECT throws_ok($$ SELECT api.authenticate(repeat('e', 64)) $$, 'MK401', NULL, 'an unknown token is MK401');
SELECT throws_ok($$ SELECT api.authenticate(NULL) $$, 'MK401', NULL, 'no token is MK401');
UPDATE "ApiToken" SET "expiresAt" = now() - interval '1 second' WHERE "tokenHash" = (SELECT t4 FROM h);
SELECT throws_ok($$ SELECT api.authenticate((SELECT t4 FROM h)) $$, 'MK401', NULL, 'an expired token is MK401');
SELECT throws_ok($$ SELECT api.authenticate((SELECT t1 FROM h), 'ROOT') $$, 'MKV00', NULL, 'an unknown role name is MKV00');

-- revoke_token (3)
SELECT is(api.revoke_token((SELECT t1 FROM h)), '{"revoked": true}'::jsonb, 'revoke_token revokes a live token');
SELECT throws_ok($$ SELECT api.authenticate((SELECT t1 FROM h)) $$, 'MK401', NULL, 'a revoked token is MK401');
SELECT is(api.revoke_token((SELECT t1 FROM h)), '{"revoked": false}'::jsonb, 'revoking it again is no error, and says so');

SELECT * FROM finish();
ROLLBACK;
