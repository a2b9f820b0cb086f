-- Password login and its throttle: app.login_parameters (salt, cost, delay, upgrade; stable fake
-- parameters for unknown emails), app.login (the key compared in the database, the token made
-- there, failures recorded per (email, client) pair; five in 15 minutes lock that pair only),
-- api.lift_login_throttle, and internal.client_key (the client a failure counts against).
BEGIN;
\ir lib/helpers.psql
SELECT plan(65);

-- A salt (22 characters) or a key (43 characters) in the hash's URL-safe base64, from a seed.
CREATE FUNCTION pg_temp.salt(p_seed text) RETURNS text LANGUAGE sql AS $$
    SELECT internal.b64url(substr(sha256(convert_to(p_seed, 'UTF8')), 1, 16))
$$;
CREATE FUNCTION pg_temp.key(p_seed text) RETURNS text LANGUAGE sql AS $$
    SELECT internal.b64url(sha256(convert_to(p_seed, 'UTF8')))
$$;
-- An encoded scrypt hash of cost N (r = 8, p = 1) with this salt and key.
CREATE FUNCTION pg_temp.hash(p_n integer, p_salt text, p_key text) RETURNS text LANGUAGE sql AS $$
    SELECT format('scrypt$%s$8$1$%s$%s', p_n, p_salt, p_key)
$$;
-- p_times failed logins (a wrong key) of an email from a client.
CREATE FUNCTION pg_temp.fail(p_email text, p_client text, p_times integer DEFAULT 1) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM app.login(p_email, p_client, 'not-the-key') FROM generate_series(1, p_times);
END
$$;
-- Failures recorded against a pair, by lower-cased email and client key.
CREATE FUNCTION pg_temp.failures(p_email text, p_client text) RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM internal.login_attempt WHERE email = p_email AND client = p_client
$$;

CREATE TEMP TABLE fx AS SELECT pg_temp.salt('ana') AS ana_salt, pg_temp.key('ana') AS ana_key,
                               pg_temp.salt('old') AS old_salt, pg_temp.key('old') AS old_key,
                               pg_temp.salt('new') AS new_salt, pg_temp.key('new') AS new_key;
ALTER TABLE fx ADD ana text, ADD old text;
UPDATE fx SET ana = api.create_user('Ana@Test.invalid', 'Ana', pg_temp.hash(131072, ana_salt, ana_key)) ->> 'id',
              old = api.create_user('old@test.invalid', 'Old', pg_temp.hash(16384, old_salt, old_key)) ->> 'id';

-- login_parameters of a known email (3)
SELECT is(app.login_parameters(' ANA@test.invalid', '10.0.0.1'),
          (SELECT jsonb_build_object('salt', ana_salt, 'n', 131072, 'r', 8, 'p', 1, 'delay', 0) FROM fx),
          'login_parameters gives the stored salt and cost and no delay, finding the email case-insensitively');
SELECT ok(strpos(app.login_parameters('ana@test.invalid', '10.0.0.1')::text, (SELECT ana_key FROM fx)) = 0,
          'the stored key never leaves the database');
SELECT is((SELECT count(*)::int FROM internal.login_attempt), 0, 'asking for the parameters records nothing');

-- Unknown emails get stable, plausible fake parameters (6)
CREATE TEMP TABLE unk AS SELECT app.login_parameters('nobody@test.invalid', '10.0.0.1') AS a,
                                app.login_parameters(' Nobody@TEST.invalid', '10.9.9.9') AS b,
                                app.login_parameters('someone@test.invalid', '10.0.0.1') AS c;
SELECT is((SELECT b ->> 'salt' FROM unk), (SELECT a ->> 'salt' FROM unk),
          'an unknown email gets the same salt every time, from any client');
SELECT isnt((SELECT c ->> 'salt' FROM unk), (SELECT a ->> 'salt' FROM unk), 'another unknown email gets another salt');
SELECT is((SELECT a - 'salt' FROM unk), '{"n": 131072, "r": 8, "p": 1, "delay": 0}'::jsonb,
          'at the target cost, without "upgrade", like a current account');
SELECT matches((SELECT a ->> 'salt' FROM unk), '^[A-Za-z0-9_-]{22}$', 'the fake salt looks like a real one');
UPDATE internal.login_secret SET pepper = gen_random_bytes(32);
SELECT isnt(app.login_parameters('nobody@test.invalid', '10.0.0.1') ->> 'salt', (SELECT a ->> 'salt' FROM unk),
            'the fake salt comes from the server''s pepper, not from the email alone');
SELECT is(app.login('nobody@test.invalid', '10.0.0.1', (SELECT ana_key FROM fx)), '{"authenticated": false}'::jsonb,
          'a login to an unknown email fails without raising');

-- A correct key logs in and gets a token (6)
CREATE TEMP TABLE ok1 AS SELECT app.login('ANA@test.invalid ', '10.0.0.1', ana_key) AS j FROM fx;
SELECT is((SELECT j - 'token' - 'expiresAt' FROM ok1),
          (SELECT jsonb_build_object('authenticated', true, 'tokenType', 'Bearer', 'userId', ana, 'role', 'BUYER') FROM fx),
          'the key derived with the stored parameters logs in');
SELECT results_eq($$ SELECT "userId", "expiresAt" FROM "ApiToken"
                     WHERE "tokenHash" = encode(sha256(convert_to((SELECT j ->> 'token' FROM ok1), 'UTF8')), 'hex') $$,
                  $$ SELECT ana, now() + interval '24 hours' FROM fx $$,
                  'the token is stored as its SHA-256, for the user, valid for 24 hours');
SELECT is(api.authenticate(encode(sha256(convert_to((SELECT j ->> 'token' FROM ok1), 'UTF8')), 'hex')),
          (SELECT ana FROM fx), 'api.authenticate accepts it');
SELECT is_empty($$ SELECT 1 FROM "ApiToken" WHERE "tokenHash" = (SELECT j ->> 'token' FROM ok1) $$,
                'the token itself is not stored');
SELECT matches((SELECT j ->> 'token' FROM ok1), '^[A-Za-z0-9_-]{43}$', 'the token is 32 random bytes in URL-safe base64');
SELECT isnt(app.login('ana@test.invalid', '10.0.0.1', (SELECT ana_key FROM fx)) ->> 'token', (SELECT j ->> 'token' FROM ok1),
            'each login makes a new token');

-- Failures are recorded against their pair (3)
SELECT is(app.login(' ANA@test.invalid', '10.0.0.1', 'not-the-key'), '{"authenticated": false}'::jsonb,
          'a wrong key answers authenticated: false without raising');
SELECT is(app.login('ana@test.invalid', '10.0.0.1', NULL), '{"authenticated": false}'::jsonb, 'so does a missing key');
SELECT is(pg_temp.failures('ana@test.invalid', '10.0.0.1'), 2,
          'both are recorded, under the lower-cased, trimmed email and the client');

-- Five failures lock the pair, and only the pair (8)
SELECT pg_temp.fail('ana@test.invalid', '10.0.0.1', 3);
SELECT throws_ok($$ SELECT app.login_parameters('ana@test.invalid', '10.0.0.1') $$, 'MKT29', NULL,
                 'after five failures in 15 minutes the pair gets no parameters (MKT29)');
SELECT throws_ok($$ SELECT app.login('ana@test.invalid', '10.0.0.1', (SELECT ana_key FROM fx)) $$, 'MKT29', NULL,
                 'and not even the right key logs in from that client');
SELECT is(pg_temp.error_of($$ SELECT app.login('ana@test.invalid', '10.0.0.1', 'x') $$) -> 'detail',
          '{"retryAfter": 900}'::jsonb, 'the DETAIL says when the window frees a slot');
SELECT is(pg_temp.failures('ana@test.invalid', '10.0.0.1'), 5, 'refused attempts are not recorded');
SELECT is(app.login_parameters('ana@test.invalid', '10.0.0.2') ->> 'salt', (SELECT ana_salt FROM fx),
          'the same email from another client gets its parameters');
SELECT is(app.login('ana@test.invalid', '10.0.0.2', (SELECT ana_key FROM fx)) -> 'authenticated', 'true'::jsonb,
          'and logs in: nobody can lock an account out for everyone');
SELECT lives_ok($$ SELECT app.login_parameters('someone@test.invalid', '10.0.0.1') $$,
                'the locked client may still try another email');
SELECT pg_temp.fail('nobody@test.invalid', '10.0.0.3', 5);
SELECT throws_ok($$ SELECT app.login_parameters('nobody@test.invalid', '10.0.0.3') $$, 'MKT29', NULL,
                 'an unknown email locks like a known one (the lock does not tell whether it exists)');

-- The window slides (2)
UPDATE internal.login_attempt SET attempted_at = now() - interval '10 minutes'
WHERE id = (SELECT min(id) FROM internal.login_attempt WHERE email = 'ana@test.invalid' AND client = '10.0.0.1');
SELECT is(pg_temp.error_of($$ SELECT app.login_parameters('ana@test.invalid', '10.0.0.1') $$) -> 'detail' -> 'retryAfter',
          '300'::jsonb, 'retryAfter counts from the oldest failure that must leave the window');
UPDATE internal.login_attempt SET attempted_at = now() - interval '15 minutes'
WHERE id = (SELECT min(id) FROM internal.login_attempt WHERE email = 'ana@test.invalid' AND client = '10.0.0.1');
SELECT lives_ok($$ SELECT app.login_parameters('ana@test.invalid', '10.0.0.1') $$,
                'a failure older than 15 minutes no longer counts');

-- A success clears its own pair only (4)
SELECT pg_temp.fail('ana@test.invalid', '10.0.0.2', 2);
SELECT is((SELECT app.login('ana@test.invalid', '10.0.0.1', ana_key) -> 'authenticated' FROM fx), 'true'::jsonb,
          'the right key logs in from the client once its pair is no longer locked');
SELECT is(pg_temp.failures('ana@test.invalid', '10.0.0.1'), 0, 'a success deletes the failures of its pair');
SELECT is(pg_temp.failures('ana@test.invalid', '10.0.0.2'), 2, 'not those of the same email from another client');
SELECT is(pg_temp.failures('nobody@test.invalid', '10.0.0.1'), 1, 'nor those of the same client on another email');

-- The delay grows with an email's failures from many clients, up to 3 seconds (4)
SELECT pg_temp.fail('target@test.invalid', '10.1.0.' || i) FROM generate_series(1, 5) AS i;
SELECT is((app.login_parameters('target@test.invalid', '10.2.0.1') ->> 'delay')::numeric, 0.0,
          'five failures of an email cost no delay');
SELECT pg_temp.fail('target@test.invalid', '10.1.0.6');
SELECT is((app.login_parameters('target@test.invalid', '10.2.0.1') ->> 'delay')::numeric, 0.2,
          'the sixth adds 0.2 s');
SELECT pg_temp.fail('target@test.invalid', '10.1.0.' || i) FROM generate_series(7, 20) AS i;
SELECT is((app.login_parameters('target@test.invalid', '10.2.0.1') ->> 'delay')::numeric, 3.0,
          'twenty make 3 s');
SELECT pg_temp.fail('target@test.invalid', '10.1.0.' || i) FROM generate_series(21, 40) AS i;
SELECT is((app.login_parameters('target@test.invalid', '10.2.0.1') ->> 'delay')::numeric, 3.0,
          'and the delay stops at 3 s');

-- A client failing on many emails is slowed, not locked out of the others (3)
SELECT pg_temp.fail('user' || i || '@test.invalid', '192.0.2.7') FROM generate_series(1, 25) AS i;
SELECT is((app.login_parameters('ana@test.invalid', '192.0.2.7') ->> 'delay')::numeric, 1.0,
          'a client with 25 failures in the window waits 0.2 s for each beyond 20');
SELECT is(app.login('ana@test.invalid', '192.0.2.7', (SELECT ana_key FROM fx)) -> 'authenticated', 'true'::jsonb,
          'and still logs in to an email it never failed');
SELECT is((app.login_parameters('ana@test.invalid', '192.0.2.8') ->> 'delay')::numeric, 0.0,
          'the next address is not slowed');

-- IPv6 clients count by their /64 (2)
SELECT pg_temp.fail('ana@test.invalid', '2001:db8:0:1::' || i) FROM generate_series(1, 5) AS i;
SELECT throws_ok($$ SELECT app.login_parameters('ana@test.invalid', '2001:db8:0:1:ffff::9') $$, 'MKT29', NULL,
                 'failures from addresses of one IPv6 /64 lock the whole /64');
SELECT lives_ok($$ SELECT app.login_parameters('ana@test.invalid', '2001:db8:0:2::1') $$, 'another /64 is another client');

-- A weak hash is upgraded on login (8)
CREATE TEMP TABLE up AS SELECT app.login_parameters('old@test.invalid', '10.3.0.1') AS j;
SELECT is((SELECT j - 'upgrade' - 'delay' FROM up), (SELECT jsonb_build_object('salt', old_salt, 'n', 16384, 'r', 8, 'p', 1) FROM fx),
          'a weak hash gets its own parameters');
SELECT is((SELECT (j -> 'upgrade') - 'salt' FROM up), '{"n": 131072, "r": 8, "p": 1}'::jsonb,
          'and "upgrade" at the target cost');
SELECT ok((SELECT (j #>> '{upgrade,salt}') ~ '^[A-Za-z0-9_-]{22}$' AND j #>> '{upgrade,salt}' <> old_salt FROM up, fx),
          'with a fresh salt');
SELECT throws_ok($$ SELECT app.login('old@test.invalid', '10.3.0.1', old_key, pg_temp.hash(16384, new_salt, new_key)) FROM fx $$,
                 'MKV00', NULL, 'an upgrade hash below the target cost is MKV00');
SELECT throws_ok($$ SELECT app.login('old@test.invalid', '10.3.0.1', old_key, 'scrypt$131072$8$1$short$key') FROM fx $$,
                 'MKV00', NULL, 'a malformed upgrade hash is MKV00');
SELECT ok((SELECT "passwordHash" = pg_temp.hash(16384, old_salt, old_key) FROM "User", fx WHERE id = old)
          AND NOT EXISTS (SELECT 1 FROM "ApiToken" t, fx WHERE t."userId" = fx.old),
          'a refused upgrade changes no hash and makes no token');
SELECT is((SELECT app.login('old@test.invalid', '10.3.0.1', old_key, pg_temp.hash(131072, new_salt, new_key)) -> 'authenticated' FROM fx),
          'true'::jsonb, 'the old key logs in with a good upgrade hash');
SELECT is(app.login_parameters('old@test.invalid', '10.3.0.1'),
          (SELECT jsonb_build_object('salt', new_salt, 'n', 131072, 'r', 8, 'p', 1, 'delay', 0) FROM fx),
          'which replaces the stored hash: the next login uses it and needs no upgrade');

-- An upgrade hash for a hash already at the target is ignored (2)
SELECT is((SELECT app.login('ana@test.invalid', '10.3.0.1', ana_key, pg_temp.hash(131072, new_salt, new_key)) -> 'authenticated' FROM fx),
          'true'::jsonb, 'a current hash logs in with an upgrade hash given');
SELECT is((SELECT "passwordHash" FROM "User" WHERE id = (SELECT ana FROM fx)),
          (SELECT pg_temp.hash(131072, ana_salt, ana_key) FROM fx), 'a current hash is never replaced');

-- api.lift_login_throttle (6)
SELECT pg_temp.fail('ana@test.invalid', '10.4.0.1', 5);
SELECT is(api.lift_login_throttle(' ANA@test.invalid', '10.4.0.1'), 5, 'lifting one client forgets its failures and says how many');
SELECT lives_ok($$ SELECT app.login_parameters('ana@test.invalid', '10.4.0.1') $$, 'so that pair may try again at once');
SELECT is(pg_temp.failures('ana@test.invalid', '10.0.0.2'), 2, 'the email''s failures from other clients stay');
SELECT is(api.lift_login_throttle('ana@test.invalid', '2001:db8:0:1:abcd::1'), 5,
          'an IPv6 address lifts the failures of its /64');
SELECT is(api.lift_login_throttle('Ana@test.invalid'), 2, 'without a client, every client''s failures of the email go');
SELECT throws_ok($$ SELECT api.lift_login_throttle(' ') $$, 'MKV00', NULL, 'no email is MKV00');

-- internal.client_key (5)
SELECT is(internal.client_key('192.0.2.7'), '192.0.2.7', 'an IPv4 address is its own key');
SELECT is(ARRAY[internal.client_key('2001:DB8:1:2:aaaa::1'), internal.client_key('2001:db8:1:2::5')],
          ARRAY['2001:db8:1:2::/64', '2001:db8:1:2::/64'], 'an IPv6 address stands for its /64, in any spelling');
SELECT is(internal.client_key('::ffff:192.0.2.7'), '192.0.2.7', 'an IPv4-mapped IPv6 address is the IPv4 address');
SELECT is(ARRAY[internal.client_key(' unix-socket '), internal.client_key('1.2.3'), internal.client_key(NULL)],
          ARRAY['unix-socket', '1.2.3', ''], 'anything else is kept as given (trimmed), NULL as the empty key');
SELECT is(length(internal.client_key(repeat('x', 150))), 100, 'and cut to 100 characters');

-- Arguments, and the app's role (3)
SELECT throws_ok($$ SELECT app.login_parameters(NULL, '10.0.0.1') $$, 'MKV00', NULL, 'login_parameters without an email is MKV00');
SELECT throws_ok($$ SELECT app.login(' ', '10.0.0.1', 'k') $$, 'MKV00', NULL, 'login without an email is MKV00');
SET LOCAL ROLE marketplace_app;
SELECT is(app.login('ana@test.invalid', NULL, app.login_parameters('ana@test.invalid', NULL) ->> 'salt' || '-is-no-key')
          -> 'authenticated', 'false'::jsonb,
          'marketplace_app runs both steps (here with no client: one shared bucket) without reading a table');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
