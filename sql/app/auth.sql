-- Schema app: what the HTTP app's role marketplace_app may call, and nothing else. Each function
-- identifies its caller only by the SHA-256 of a bearer token the app was given (or needs no
-- identity), so a stolen app credential is worth no more than an anonymous HTTP client: it cannot
-- act as a user whose token it lacks, read a password hash, mint a token without the password,
-- record a payment without the webhook's signature, expire orders or move stock by hand.
-- This file: sign-up, password login and logout.

-- app.check_registration: refuses a client that has used up its sign-ups for the hour, before the
-- app spends a 128 MiB scrypt on the password. app.register checks again under a lock.
-- Raises: MKT29 DETAIL {"retryAfter": seconds}. Callers: marketplace_app (POST /api/auth/register).
CREATE OR REPLACE FUNCTION app.check_registration(p_client text)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_retry integer;
BEGIN
    v_retry := internal.registration_retry_after(internal.client_key(p_client));
    IF v_retry IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKT29', MESSAGE = 'too many sign-ups from this client; try again later',
            DETAIL = jsonb_build_object('retryAfter', v_retry)::text,
            HINT = 'The limit is internal.settings.registrations_per_client_per_hour (python -m pyapp limits).';
    END IF;
END
$$;
COMMENT ON FUNCTION app.check_registration(text) IS
    'MKT29 when the client has used up its sign-ups for the hour (checked before the password is hashed).';
REVOKE ALL ON FUNCTION app.check_registration(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.check_registration(text) TO marketplace_app;

-- internal.registration_retry_after: seconds until a client (a client_key) may sign up again,
-- NULL when it may now (or when sign-ups are not limited).
-- Raises: nothing. Callers: app.check_registration, app.register.
CREATE OR REPLACE FUNCTION internal.registration_retry_after(p_client text)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(1, ceil(extract(epoch FROM r.registered_at + interval '1 hour' - now())))::integer
    FROM internal.settings s
    CROSS JOIN LATERAL (
        SELECT g.registered_at FROM internal.registration g
        WHERE g.client = p_client AND g.registered_at > now() - interval '1 hour'
        ORDER BY g.registered_at DESC
        OFFSET s.registrations_per_client_per_hour - 1 LIMIT 1) r
    WHERE s.registrations_per_client_per_hour IS NOT NULL
$$;
COMMENT ON FUNCTION internal.registration_retry_after(text) IS
    'Seconds until a client may sign up again (NULL: now), from the per-client hourly limit.';
REVOKE ALL ON FUNCTION internal.registration_retry_after(text) FROM PUBLIC;

-- app.register: self-service sign-up as a BUYER or SELLER from a client address. The hash must
-- be a scrypt hash of at least the target cost (internal.scrypt_target). Sign-ups per client
-- (an IPv4 address or an IPv6 /64) are limited per hour by registrations_per_client_per_hour;
-- no address is exempt, loopback included (behind a proxy every client is loopback).
-- Raises: MKT29 the client's limit is used up; MKV00 weak or malformed hash; and what
--         api.register_user raises (MK503, MK403 for ADMIN, MKV00, MKC09 email taken).
-- Callers: marketplace_app (POST /api/auth/register).
CREATE OR REPLACE FUNCTION app.register(
    p_client text,
    p_email text,
    p_name text,
    p_password_hash text,
    p_role text DEFAULT 'BUYER')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_client text := internal.client_key(p_client);
    v_user   jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM internal.password_hash_parts(p_password_hash) h, internal.scrypt_target() t
                   WHERE h.n >= t.n AND h.r >= t.r AND h.p >= t.p) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'password hash is malformed or weaker than the scrypt target',
            DETAIL = jsonb_build_object('field', 'passwordHash')::text;
    END IF;
    -- One sign-up of a client at a time, so concurrent ones cannot overshoot its limit.
    PERFORM pg_advisory_xact_lock(hashtext('internal.registration'), hashtext(v_client));
    PERFORM app.check_registration(p_client);
    v_user := api.register_user(p_email, p_name, p_password_hash, coalesce(p_role, 'BUYER'));
    INSERT INTO internal.registration (client) VALUES (v_client);
    -- Sign-ups older than the window count for nothing: sweep them now and then.
    IF random() < 0.01 THEN
        DELETE FROM internal.registration g WHERE g.registered_at <= now() - interval '1 hour';
    END IF;
    RETURN v_user;
END
$$;
COMMENT ON FUNCTION app.register(text, text, text, text, text) IS
    'Sign-up as BUYER or SELLER, limited per client per hour (MKT29); the hash must meet the scrypt target.';
REVOKE ALL ON FUNCTION app.register(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.register(text, text, text, text, text) TO marketplace_app;

-- app.login_parameters: the first step of a password login. Returns what the app needs to derive
-- the key from the password: {"salt", "n", "r", "p"} of the stored hash, "delay" (seconds the app
-- waits first, from internal.login_throttle) and, when the stored hash is weaker than the scrypt
-- target, "upgrade": the parameters (with a fresh salt) of the hash app.login will store instead.
-- An unknown email gets the target cost and a salt derived from the email and a server secret:
-- stable and plausible, so the answer never tells whether an account exists. The stored hash
-- itself never leaves the database.
-- Raises: MKT29 the (email, client) pair is locked; MKV00 missing email.
-- Callers: marketplace_app (POST /api/auth/login).
CREATE OR REPLACE FUNCTION app.login_parameters(p_email text, p_client text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_email    text := lower(btrim(p_email));
    v_throttle record;
    v_target   record := internal.scrypt_target();
    v_n        integer;
    v_r        integer;
    v_p        integer;
    v_salt     text;
    v_result   jsonb;
BEGIN
    IF v_email IS NULL OR v_email = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'email is required',
            DETAIL = jsonb_build_object('field', 'email')::text;
    END IF;
    v_throttle := internal.login_throttle(v_email, internal.client_key(p_client));
    IF v_throttle.retry_after IS NOT NULL THEN
        PERFORM internal.raise_login_throttled(v_throttle.retry_after);
    END IF;
    SELECT h.n, h.r, h.p, h.salt INTO v_n, v_r, v_p, v_salt
    FROM "User" u, internal.password_hash_parts(u."passwordHash") h
    WHERE lower(u.email) = v_email;
    IF NOT FOUND THEN
        SELECT v_target.n, v_target.r, v_target.p,
               internal.b64url(substr(hmac(convert_to(v_email, 'UTF8'), s.pepper, 'sha256'), 1, 16))
        INTO v_n, v_r, v_p, v_salt
        FROM internal.login_secret s;
    END IF;
    v_result := jsonb_build_object('salt', v_salt, 'n', v_n, 'r', v_r, 'p', v_p,
                                   'delay', v_throttle.delay_s);
    IF v_n < v_target.n OR v_r < v_target.r OR v_p < v_target.p THEN
        v_result := v_result || jsonb_build_object('upgrade', jsonb_build_object(
            'salt', internal.b64url(gen_random_bytes(16)), 'n', v_target.n, 'r', v_target.r, 'p', v_target.p));
    END IF;
    RETURN v_result;
END
$$;
COMMENT ON FUNCTION app.login_parameters(text, text) IS
    'Salt and scrypt cost to derive a login key (stable fake ones for unknown emails), the throttle delay, and an upgrade when the hash is weak.';
REVOKE ALL ON FUNCTION app.login_parameters(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.login_parameters(text, text) TO marketplace_app;

-- app.login: the second step. p_key is the scrypt key the app derived from the password with the
-- parameters app.login_parameters gave. The database compares it with the stored one (as SHA-256
-- digests, so the comparison's timing says nothing about the stored key), and on a match creates
-- the bearer token itself (32 random bytes), keeps only its SHA-256 and returns it, once. With
-- p_upgrade_hash (the password hashed with the "upgrade" parameters), a hash weaker than the
-- target is replaced after the match. A mismatch or an unknown email is recorded against the
-- (email, client) pair and answers {"authenticated": false}: nothing is raised, so the record
-- stays. Not blocked by maintenance mode: an admin must be able to log in to end it.
-- Raises: MKT29 the pair is locked (five failures in 15 minutes); MKV00 missing email or a
--         malformed or weak upgrade hash.
-- Callers: marketplace_app (POST /api/auth/login).
CREATE OR REPLACE FUNCTION app.login(
    p_email text,
    p_client text,
    p_key text,
    p_upgrade_hash text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_email   text := lower(btrim(p_email));
    v_client  text := internal.client_key(p_client);
    v_user    record;
    v_retry   integer;
    v_token   text;
    v_expires timestamptz;
    v_target  record := internal.scrypt_target();
BEGIN
    IF v_email IS NULL OR v_email = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'email is required',
            DETAIL = jsonb_build_object('field', 'email')::text;
    END IF;
    -- Attempts of one pair one at a time: concurrent ones cannot overshoot the limit.
    PERFORM pg_advisory_xact_lock(hashtext('internal.login_attempt'), hashtext(v_email || ' ' || v_client));
    v_retry := (internal.login_throttle(v_email, v_client)).retry_after;
    IF v_retry IS NOT NULL THEN
        PERFORM internal.raise_login_throttled(v_retry);
    END IF;

    SELECT u.id, u.role, h.n, h.r, h.p, h.key INTO v_user
    FROM "User" u, internal.password_hash_parts(u."passwordHash") h
    WHERE lower(u.email) = v_email;
    IF NOT FOUND OR p_key IS NULL
       OR sha256(convert_to(p_key, 'UTF8')) <> sha256(convert_to(v_user.key, 'UTF8')) THEN
        INSERT INTO internal.login_attempt (email, client) VALUES (v_email, v_client);
        IF random() < 0.01 THEN
            DELETE FROM internal.login_attempt a WHERE a.attempted_at <= now() - interval '15 minutes';
        END IF;
        RETURN jsonb_build_object('authenticated', false);
    END IF;

    DELETE FROM internal.login_attempt a WHERE a.email = v_email AND a.client = v_client;
    IF p_upgrade_hash IS NOT NULL
       AND (v_user.n < v_target.n OR v_user.r < v_target.r OR v_user.p < v_target.p) THEN
        IF NOT EXISTS (SELECT 1 FROM internal.password_hash_parts(p_upgrade_hash) h
                       WHERE h.n >= v_target.n AND h.r >= v_target.r AND h.p >= v_target.p) THEN
            RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'the upgraded password hash is malformed or weak',
                DETAIL = jsonb_build_object('field', 'upgradeHash')::text;
        END IF;
        UPDATE "User" u SET "passwordHash" = p_upgrade_hash WHERE u.id = v_user.id;
    END IF;

    v_token := internal.b64url(gen_random_bytes(32));
    INSERT INTO "ApiToken" ("tokenHash", "userId", "expiresAt")
    VALUES (encode(sha256(convert_to(v_token, 'UTF8')), 'hex'), v_user.id, now() + interval '24 hours')
    RETURNING "expiresAt" INTO v_expires;
    RETURN jsonb_build_object('authenticated', true, 'token', v_token, 'tokenType', 'Bearer',
                              'expiresAt', v_expires, 'userId', v_user.id, 'role', v_user.role);
END
$$;
COMMENT ON FUNCTION app.login(text, text, text, text) IS
    'Compares a derived login key with the stored one and, on a match, creates and returns a bearer token (stored as its SHA-256); records failures per (email, client).';
REVOKE ALL ON FUNCTION app.login(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.login(text, text, text, text) TO marketplace_app;

-- app.logout: revokes the caller's own token.
-- Raises: MK401 unknown, expired or revoked token. Callers: marketplace_app (POST /api/auth/logout).
CREATE OR REPLACE FUNCTION app.logout(p_token_hash text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM api.authenticate(p_token_hash);
    RETURN api.revoke_token(p_token_hash);
END
$$;
COMMENT ON FUNCTION app.logout(text) IS 'Revokes the caller''s bearer token (MK401 when it is not valid).';
REVOKE ALL ON FUNCTION app.logout(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.logout(text) TO marketplace_app;
