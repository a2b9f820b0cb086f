-- api.begin_login: the first step of a password login (POST /api/auth/login). It throttles,
-- records the attempt and returns what the app needs to verify the password: the user's id, role
-- and encoded hash (no row for an unknown email; the app then verifies against a dummy hash).
-- Throttling, over a sliding window of 15 minutes: an attempt is refused when its email (in any
-- case, registered or not, so that the answer never tells whether an account exists) already has
-- 5 failed attempts in the window, or its client address (the app passes REMOTE_ADDR) has 20.
-- A refused attempt is not recorded and its password is never checked.
-- An admitted attempt is recorded in internal.login_attempt at once and counts as a failure until
-- api.issue_token, which the app calls only after a correct password, deletes the account's
-- attempts. So a failure costs the app no second call, and concurrent attempts (any worker)
-- cannot overshoot a limit: each counts and inserts under advisory locks per email and address.
-- Raises: MKT29 throttled, DETAIL {"retryAfter": seconds until the window frees a slot};
--         MKV00 missing email.
-- Callers: marketplace_app (POST /api/auth/login), DBAs.
CREATE OR REPLACE FUNCTION api.begin_login(p_email text, p_client text)
RETURNS TABLE (user_id text, role text, password_hash text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    c_window      constant interval := interval '15 minutes';
    c_per_account constant integer := 5;
    c_per_client  constant integer := 20;
    v_email   text := lower(btrim(p_email));
    v_client  text := coalesce(left(btrim(p_client), 100), '');
    v_free_at timestamptz;
BEGIN
    IF v_email IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'email is required',
            DETAIL = jsonb_build_object('field', 'email')::text;
    END IF;
    -- Always the email's lock first, in two separate key spaces: two logins never wait in a cycle.
    PERFORM pg_advisory_xact_lock(hashtext('internal.login_attempt.email'), hashtext(v_email));
    PERFORM pg_advisory_xact_lock(hashtext('internal.login_attempt.client'), hashtext(v_client));

    -- With n >= limit failures in the window, a slot frees when the limit-th newest one leaves it.
    SELECT max(s.free_at) INTO v_free_at
    FROM ((SELECT a.attempted_at + c_window FROM internal.login_attempt a
           WHERE a.email = v_email AND a.attempted_at > now() - c_window
           ORDER BY a.attempted_at DESC OFFSET c_per_account - 1 LIMIT 1)
          UNION ALL
          (SELECT a.attempted_at + c_window FROM internal.login_attempt a
           WHERE a.client = v_client AND a.attempted_at > now() - c_window
           ORDER BY a.attempted_at DESC OFFSET c_per_client - 1 LIMIT 1)) AS s(free_at);
    IF v_free_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKT29', MESSAGE = 'too many failed logins; try again later',
            DETAIL = jsonb_build_object(
                'retryAfter', greatest(1, ceil(extract(epoch FROM v_free_at - now())))::integer)::text,
            HINT = 'Wait retryAfter seconds. A DBA lifts it with DELETE FROM internal.login_attempt WHERE email = ...';
    END IF;

    INSERT INTO internal.login_attempt (email, client) VALUES (v_email, v_client);
    -- Attempts older than the window count for nothing: sweep them now and then (index on time).
    IF random() < 0.01 THEN
        DELETE FROM internal.login_attempt a WHERE a.attempted_at <= now() - c_window;
    END IF;

    RETURN QUERY SELECT c.user_id, c.role, c.password_hash FROM api.login_credentials(p_email) AS c;
END
$$;
COMMENT ON FUNCTION api.begin_login(text, text) IS
    'Starts a password login: MKT29 after 5 failures per email or 20 per client address in 15 minutes; records the attempt as a failure until api.issue_token; returns the credentials.';
REVOKE ALL ON FUNCTION api.begin_login(text, text) FROM PUBLIC;
