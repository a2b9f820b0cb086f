-- internal.scrypt_target: the scrypt cost every password hash should have: OWASP's guidance for
-- scrypt (N = 2^17, r = 8, p = 1: 128 MiB and roughly a quarter to half a second per derivation
-- on one core). pyapp.auth hashes with the same figures; a login upgrades a weaker hash.
-- Raises: nothing. Callers: internal.password_hash_parts, app.login_parameters, app.login.
CREATE OR REPLACE FUNCTION internal.scrypt_target(OUT n integer, OUT r integer, OUT p integer)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 131072, 8, 1
$$;
COMMENT ON FUNCTION internal.scrypt_target() IS 'The scrypt cost of new password hashes: N = 2^17, r = 8, p = 1.';
REVOKE ALL ON FUNCTION internal.scrypt_target() FROM PUBLIC;

-- internal.password_hash_parts: splits an encoded hash `scrypt$N$r$p$salt$key` (salt and key in
-- unpadded URL-safe base64, as pyapp.auth writes them) into its parts; no row when it is not one.
-- Bounds keep a stored hash from asking a login for an absurd cost (N at most 2^20, r at most 32,
-- p at most 16).
-- Raises: nothing. Callers: app.register, app.login_parameters, app.login.
CREATE OR REPLACE FUNCTION internal.password_hash_parts(
    p_hash text, OUT n integer, OUT r integer, OUT p integer, OUT salt text, OUT key text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m[1]::integer, m[2]::integer, m[3]::integer, m[4], m[5]
    FROM regexp_match(p_hash, '^scrypt\$([0-9]{1,7})\$([0-9]{1,2})\$([0-9]{1,2})\$([A-Za-z0-9_-]{16,64})\$([A-Za-z0-9_-]{32,128})$') AS m
    WHERE m IS NOT NULL
      AND m[1]::integer BETWEEN 2 AND 1048576 AND m[2]::integer BETWEEN 1 AND 32
      AND m[3]::integer BETWEEN 1 AND 16
$$;
COMMENT ON FUNCTION internal.password_hash_parts(text) IS
    'The cost, salt and key of an encoded scrypt hash (no row when malformed or out of bounds).';
REVOKE ALL ON FUNCTION internal.password_hash_parts(text) FROM PUBLIC;

-- internal.b64url: bytes as unpadded URL-safe base64 (RFC 4648, section 5), the encoding of
-- pyapp.auth's salts and keys and of the bearer tokens app.login makes.
-- Raises: nothing. Callers: app.login_parameters, app.login.
CREATE OR REPLACE FUNCTION internal.b64url(p_bytes bytea)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT translate(encode(p_bytes, 'base64'), E'+/=\n', '-_')
$$;
COMMENT ON FUNCTION internal.b64url(bytea) IS 'Unpadded URL-safe base64 of bytes.';
REVOKE ALL ON FUNCTION internal.b64url(bytea) FROM PUBLIC;
