-- api.create_user: creates a user of any role (BUYER, SELLER or ADMIN). The password never reaches
-- the database: p_password_hash is the encoded hash made by the caller (pyapp.auth).
-- Raises: MKV00 invalid email, name, hash or role; MKC09 email already taken (case-insensitively).
-- Callers: DBAs and `python -m pyapp create-user` (the only way to make an ADMIN);
--          api.register_user after its role check.
CREATE OR REPLACE FUNCTION api.create_user(
    p_email text,
    p_name text,
    p_password_hash text,
    p_role text DEFAULT 'BUYER')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_email text := btrim(p_email);
    v_name  text := btrim(p_name);
    v_row   "User";
BEGIN
    IF v_email IS NULL OR length(v_email) NOT BETWEEN 3 AND 254
       OR v_email !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'email must be a valid address of at most 254 characters',
            DETAIL = jsonb_build_object('field', 'email')::text;
    END IF;
    IF v_name IS NULL OR length(v_name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'name must be 1 to 200 characters',
            DETAIL = jsonb_build_object('field', 'name')::text;
    END IF;
    IF p_password_hash IS NULL OR length(p_password_hash) NOT BETWEEN 20 AND 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'password hash is missing or malformed',
            DETAIL = jsonb_build_object('field', 'passwordHash')::text;
    END IF;
    IF p_role IS NULL OR p_role NOT IN ('BUYER', 'SELLER', 'ADMIN') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'role must be BUYER, SELLER or ADMIN',
            DETAIL = jsonb_build_object('field', 'role')::text;
    END IF;
    BEGIN
        INSERT INTO "User" (email, name, role, "passwordHash")
        VALUES (v_email, v_name, p_role, p_password_hash)
        RETURNING * INTO v_row;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'MKC09', MESSAGE = 'this email is already registered',
            DETAIL = jsonb_build_object('field', 'email')::text;
    END;
    RETURN jsonb_build_object('id', v_row.id, 'email', v_row.email, 'name', v_row.name,
                              'role', v_row.role, 'createdAt', v_row."createdAt");
END
$$;
COMMENT ON FUNCTION api.create_user(text, text, text, text) IS
    'Creates a user of any role (incl. ADMIN) from an already hashed password; for DBAs and the CLI only.';
REVOKE ALL ON FUNCTION api.create_user(text, text, text, text) FROM PUBLIC;

-- api.register_user: self-service sign-up over HTTP, as a BUYER or a SELLER.
-- Raises: MK503 maintenance; MK403 role ADMIN; MKV00 other unknown role, invalid email, name or
--         hash; MKC09 email already taken (case-insensitively).
-- Callers: app.register (POST /api/auth/register, after its per-client limit), DBAs.
CREATE OR REPLACE FUNCTION api.register_user(
    p_email text,
    p_name text,
    p_password_hash text,
    p_role text DEFAULT 'BUYER')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM internal.assert_writable();
    IF p_role = 'ADMIN' THEN
        RAISE EXCEPTION USING ERRCODE = 'MK403', MESSAGE = 'an ADMIN cannot register itself',
            DETAIL = jsonb_build_object('field', 'role')::text,
            HINT = 'A DBA creates admins with api.create_user or python -m pyapp create-user.';
    END IF;
    IF p_role IS NULL OR p_role NOT IN ('BUYER', 'SELLER') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'role must be BUYER or SELLER',
            DETAIL = jsonb_build_object('field', 'role')::text;
    END IF;
    RETURN api.create_user(p_email, p_name, p_password_hash, p_role);
END
$$;
COMMENT ON FUNCTION api.register_user(text, text, text, text) IS
    'Self-service sign-up as BUYER or SELLER (MK403 for ADMIN, MKC09 when the email is taken).';
REVOKE ALL ON FUNCTION api.register_user(text, text, text, text) FROM PUBLIC;

-- api.login_credentials: what the app needs to check a password: the user's id, role and encoded
-- password hash, looked up by email case-insensitively; no row for an unknown email.
-- Raises: nothing. Callers: DBAs only: the HTTP app never sees a stored hash (app.login compares
--          the key it derived in the database).
CREATE OR REPLACE FUNCTION api.login_credentials(p_email text)
RETURNS TABLE (user_id text, role text, password_hash text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT u.id, u.role, u."passwordHash" FROM "User" u WHERE lower(u.email) = lower(btrim(p_email))
$$;
COMMENT ON FUNCTION api.login_credentials(text) IS
    'Id, role and password hash of the user with this email (no row when unknown); the app verifies the password.';
REVOKE ALL ON FUNCTION api.login_credentials(text) FROM PUBLIC;

-- api.issue_token: stores a bearer token (only its SHA-256 hex) that the caller made for a user,
-- valid for p_ttl. It is not blocked by maintenance mode.
-- Raises: MKV00 malformed hash or TTL outside 1 minute..30 days; MK404 unknown user.
-- Callers: DBAs and the CLI (simulate-race, tests) only: over HTTP a token is made only by
--          app.login, after a correct password.
CREATE OR REPLACE FUNCTION api.issue_token(p_user_id text, p_token_hash text, p_ttl interval DEFAULT '24 hours')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_expires timestamptz;
BEGIN
    IF p_token_hash IS NULL OR p_token_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'token hash must be 64 lowercase hex digits',
            DETAIL = jsonb_build_object('field', 'tokenHash')::text;
    END IF;
    IF p_ttl IS NULL OR p_ttl NOT BETWEEN interval '1 minute' AND interval '30 days' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'token lifetime must be 1 minute to 30 days',
            DETAIL = jsonb_build_object('field', 'ttl')::text;
    END IF;
    PERFORM 1 FROM "User" u WHERE u.id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK404', MESSAGE = 'user not found',
            DETAIL = jsonb_build_object('userId', p_user_id)::text;
    END IF;
    INSERT INTO "ApiToken" ("tokenHash", "userId", "expiresAt")
    VALUES (p_token_hash, p_user_id, now() + p_ttl)
    RETURNING "expiresAt" INTO v_expires;
    RETURN jsonb_build_object('userId', p_user_id, 'expiresAt', v_expires);
END
$$;
COMMENT ON FUNCTION api.issue_token(text, text, interval) IS
    'Stores a bearer token (its SHA-256 only) for a user, valid for ttl (default 24 hours).';
REVOKE ALL ON FUNCTION api.issue_token(text, text, interval) FROM PUBLIC;

-- api.revoke_token: revokes a bearer token (logout). Revoking an unknown or already revoked token
-- is not an error; "revoked" says whether this call revoked it.
-- Raises: nothing. Callers: app.logout (POST /api/auth/logout), DBAs.
CREATE OR REPLACE FUNCTION api.revoke_token(p_token_hash text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    UPDATE "ApiToken" t SET "revokedAt" = now()
    WHERE t."tokenHash" = p_token_hash AND t."revokedAt" IS NULL;
    RETURN jsonb_build_object('revoked', FOUND);
END
$$;
COMMENT ON FUNCTION api.revoke_token(text) IS 'Revokes a bearer token by its SHA-256 (logout).';
REVOKE ALL ON FUNCTION api.revoke_token(text) FROM PUBLIC;

-- api.authenticate: the user id behind a bearer token's SHA-256, optionally requiring a role (an
-- ADMIN satisfies any role). Every function of schema app that acts for a user starts with it.
-- Raises: MK401 unknown, expired or revoked token; MK403 the user lacks p_required_role;
--         MKV00 unknown role name.
-- Callers: the app schema (every authenticated route), DBAs.
CREATE OR REPLACE FUNCTION api.authenticate(p_token_hash text, p_required_role text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user_id text;
    v_role    text;
BEGIN
    IF p_required_role IS NOT NULL AND p_required_role NOT IN ('BUYER', 'SELLER', 'ADMIN') THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'role must be BUYER, SELLER or ADMIN',
            DETAIL = jsonb_build_object('field', 'role')::text;
    END IF;
    SELECT u.id, u.role INTO v_user_id, v_role
    FROM "ApiToken" t JOIN "User" u ON u.id = t."userId"
    WHERE t."tokenHash" = p_token_hash AND t."revokedAt" IS NULL AND t."expiresAt" > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'MK401', MESSAGE = 'missing, invalid, expired or revoked token',
            DETAIL = '{}', HINT = 'Log in again: POST /api/auth/login.';
    END IF;
    IF p_required_role IS NOT NULL AND v_role <> p_required_role AND v_role <> 'ADMIN' THEN
        RAISE EXCEPTION USING ERRCODE = 'MK403', MESSAGE = format('this needs the %s role', p_required_role),
            DETAIL = jsonb_build_object('requiredRole', p_required_role)::text;
    END IF;
    RETURN v_user_id;
END
$$;
COMMENT ON FUNCTION api.authenticate(text, text) IS
    'User id behind a token hash (MK401 unknown/expired/revoked); MK403 without the required role (ADMIN satisfies any).';
REVOKE ALL ON FUNCTION api.authenticate(text, text) FROM PUBLIC;
