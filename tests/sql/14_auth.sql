-- Users and bearer tokens: api.create_user, api.register_user, api.login_credentials,
-- api.issue_token, api.revoke_token, api.authenticate; and the app's side of them: app.register
-- (a scrypt hash at the target cost, a per-client hourly limit), app.check_registration, app.logout.
BEGIN;
\ir lib/helpers.psql
SELECT plan(59);

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

-- issue_token (7)
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
SELECT app.login('buyer@test.invalid', '10.0.0.1', 'not-the-key');
SELECT api.issue_token(j ->> 'id', repeat('f', 64)) ->> 'userId' FROM b;
SELECT is((SELECT count(*)::int FROM internal.login_attempt WHERE email = 'buyer@test.invalid'), 1,
          'issue_token leaves the login throttle alone (only a login through app.login clears its pair)');

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

-- app.register: who may sign up, with what hash (8)
ALTER TABLE h ADD strong text, ADD weak text;
UPDATE h SET strong = format('scrypt$131072$8$1$%s$%s', internal.b64url(substr(sha256('s1'), 1, 16)), internal.b64url(sha256('k1'))),
             weak = format('scrypt$16384$8$1$%s$%s', internal.b64url(substr(sha256('s2'), 1, 16)), internal.b64url(sha256('k2')));
CREATE TEMP TABLE r AS SELECT app.register('203.0.113.5', ' New1@test.invalid ', 'New One', strong) AS j FROM h;
SELECT is((SELECT j - 'id' - 'createdAt' FROM r), '{"email": "New1@test.invalid", "name": "New One", "role": "BUYER"}'::jsonb,
          'app.register makes a BUYER by default');
SELECT is((SELECT "passwordHash" FROM "User" WHERE id = (SELECT j ->> 'id' FROM r)), (SELECT strong FROM h),
          'with the given hash');
SELECT is(app.register('203.0.113.5', 'new2@test.invalid', 'New Two', strong, 'SELLER') ->> 'role', 'SELLER',
          'or a SELLER')
FROM h;
SELECT throws_ok($$ SELECT app.register('203.0.113.5', 'weak@test.invalid', 'Weak', weak) FROM h $$, 'MKV00', NULL,
                 'a hash weaker than the scrypt target is MKV00');
SELECT throws_ok($$ SELECT app.register('203.0.113.5', 'odd@test.invalid', 'Odd', pw) FROM h $$, 'MKV00', NULL,
                 'so is a string that is not a scrypt hash (which api.create_user would take)');
SELECT throws_ok($$ SELECT app.register('203.0.113.5', 'boss@test.invalid', 'Boss', strong, 'ADMIN') FROM h $$, 'MK403', NULL,
                 'nobody signs up as ADMIN (MK403)');
SELECT throws_ok($$ SELECT app.register('203.0.113.5', 'NEW1@test.invalid', 'Again', strong) FROM h $$, 'MKC09', NULL,
                 'a taken email is MKC09');
SELECT is((SELECT array_agg(client) FROM internal.registration), ARRAY['203.0.113.5', '203.0.113.5'],
          'only the two accepted sign-ups count against the client');

-- app.register and app.check_registration: the hourly limit per client (9)
SELECT api.set_limits('{"registrationsPerClientPerHour": 3}');
SELECT lives_ok($$ SELECT app.register('203.0.113.5', 'new3@test.invalid', 'New Three', strong) FROM h $$,
                'the third sign-up of the hour from a client is accepted under a limit of 3');
SELECT throws_ok($$ SELECT app.register('203.0.113.5', 'new4@test.invalid', 'New Four', strong) FROM h $$, 'MKT29', NULL,
                 'the fourth is MKT29');
SELECT is(pg_temp.error_of($$ SELECT app.register('203.0.113.5', 'new4@test.invalid', 'New Four', strong) FROM h $$) -> 'detail',
          '{"retryAfter": 3600}'::jsonb, 'its DETAIL says when the oldest sign-up leaves the hour');
SELECT is((SELECT count(*)::int FROM "User" WHERE email = 'new4@test.invalid'), 0, 'and it creates no user');
SELECT throws_ok($$ SELECT app.check_registration('203.0.113.5') $$, 'MKT29', NULL,
                 'check_registration refuses the client before its password is hashed');
SELECT lives_ok($$ SELECT app.check_registration('203.0.113.6') $$, 'another client may sign up');
UPDATE internal.registration SET registered_at = now() - interval '50 minutes'
WHERE id = (SELECT min(id) FROM internal.registration WHERE client = '203.0.113.5');
SELECT is(pg_temp.error_of($$ SELECT app.check_registration('203.0.113.5') $$) -> 'detail' -> 'retryAfter', '600'::jsonb,
          'retryAfter counts from the oldest sign-up that must leave the hour');
UPDATE internal.registration SET registered_at = now() - interval '1 hour'
WHERE id = (SELECT min(id) FROM internal.registration WHERE client = '203.0.113.5');
SELECT lives_ok($$ SELECT app.register('203.0.113.5', 'new4@test.invalid', 'New Four', strong) FROM h $$,
                'a sign-up an hour old no longer counts');
SELECT app.register('127.0.0.1', 'local' || i || '@test.invalid', 'Local', strong) ->> 'role' FROM h, generate_series(1, 3) AS i;
SELECT throws_ok($$ SELECT app.check_registration('127.0.0.1') $$, 'MKT29', NULL,
                 'loopback is limited like any client (behind a proxy every client is loopback)');

-- IPv6 clients of one /64 share a limit; a NULL limit lifts it (4)
SELECT app.register(c, 'v6-' || i || '@test.invalid', 'Six', strong) ->> 'role'
FROM h, (VALUES (1, '2001:db8:5:6::1'), (2, '2001:db8:5:6::2'), (3, '2001:db8:5:6:abcd::3')) AS v(i, c);
SELECT throws_ok($$ SELECT app.register('2001:db8:5:6:ffff::1', 'v6-4@test.invalid', 'Six', strong) FROM h $$, 'MKT29', NULL,
                 'addresses of one IPv6 /64 share its limit');
SELECT lives_ok($$ SELECT app.check_registration('2001:db8:5:7::1') $$, 'the next /64 has its own');
SELECT api.set_limits('{"registrationsPerClientPerHour": null}');
SELECT lives_ok($$ SELECT app.check_registration('203.0.113.5') $$, 'a NULL limit lets a full client pass the check');
SELECT lives_ok($$ SELECT app.register('2001:db8:5:6::1', 'v6-4@test.invalid', 'Six', strong) FROM h $$,
                'and sign up');

-- app.logout (4)
SELECT api.issue_token(b.j ->> 'id', t) ->> 'userId' FROM b, (VALUES (repeat('1', 64)), (repeat('2', 64))) AS v(t);
SELECT is(app.logout(repeat('1', 64)), '{"revoked": true}'::jsonb, 'logout revokes the caller''s token');
SELECT throws_ok($$ SELECT api.authenticate(repeat('1', 64)) $$, 'MK401', NULL, 'which no longer authenticates');
SELECT throws_ok($$ SELECT app.logout(repeat('1', 64)) $$, 'MK401', NULL,
                 'logging out with a revoked (or unknown) token is MK401');
SELECT is(api.authenticate(repeat('2', 64)), (SELECT j ->> 'id' FROM b), 'the user''s other tokens stay valid');

SELECT * FROM finish();
ROLLBACK;
