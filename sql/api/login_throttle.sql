-- The login throttle. A failed password counts against its (email, client) pair, where the
-- client is internal.client_key of the address the app saw (the socket peer, or the hop a trusted
-- proxy added). Five failures of one pair within 15 minutes lock that pair only: nobody can lock
-- an account out for everyone, and a proxy's shared address cannot lock out every user behind it.
-- Failures from many clients, against one email or from one client against many emails, only slow
-- the answers down (a few seconds at most), so a correct password from a client with no failures
-- of its own always gets in.

-- internal.login_throttle: the throttle's verdict for one attempt: retry_after (seconds until the
-- pair may try again; NULL when it may try now) and delay_s (how long the app waits before it
-- answers: 0.2 s per failure beyond 5 of the email's or 20 of the client's in the window, at most
-- 3 s). The caller holds the pair's advisory lock when it goes on to record a failure.
-- Raises: nothing. Callers: app.login_parameters, app.login.
CREATE OR REPLACE FUNCTION internal.login_throttle(p_email text, p_client text,
                                                   OUT retry_after integer, OUT delay_s numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH w AS (SELECT interval '15 minutes' AS len)
    SELECT
        (SELECT greatest(1, ceil(extract(epoch FROM a.attempted_at + w.len - now())))::integer
         FROM internal.login_attempt a
         WHERE a.email = p_email AND a.client = p_client AND a.attempted_at > now() - w.len
         ORDER BY a.attempted_at DESC OFFSET 4 LIMIT 1),
        least(3.0, 0.2 * greatest(0,
            (SELECT count(*) FROM internal.login_attempt a
             WHERE a.email = p_email AND a.attempted_at > now() - w.len) - 5,
            (SELECT count(*) FROM internal.login_attempt a
             WHERE a.client = p_client AND a.attempted_at > now() - w.len) - 20))
    FROM w
$$;
COMMENT ON FUNCTION internal.login_throttle(text, text) IS
    'Seconds until an (email, client) pair may try a password again (NULL: now), and the delay its answer gets.';
REVOKE ALL ON FUNCTION internal.login_throttle(text, text) FROM PUBLIC;

-- internal.raise_login_throttled: the 429 of a locked (email, client) pair.
-- Raises: MKT29 always, DETAIL {"retryAfter": seconds}. Callers: app.login_parameters, app.login.
CREATE OR REPLACE FUNCTION internal.raise_login_throttled(p_retry_after integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'MKT29', MESSAGE = 'too many failed logins from this client; try again later',
        DETAIL = jsonb_build_object('retryAfter', p_retry_after)::text,
        HINT = 'Wait retryAfter seconds. A DBA lifts it with python -m pyapp unthrottle EMAIL.';
END
$$;
COMMENT ON FUNCTION internal.raise_login_throttled(integer) IS 'Raises MKT29 for a locked (email, client) pair.';
REVOKE ALL ON FUNCTION internal.raise_login_throttled(integer) FROM PUBLIC;

-- api.lift_login_throttle: forgets the failed logins of an email (from one client only, when
-- p_client is given), so a locked pair may try again at once. Returns how many were forgotten.
-- Raises: MKV00 missing email. Callers: `python -m pyapp unthrottle`, DBAs.
CREATE OR REPLACE FUNCTION api.lift_login_throttle(p_email text, p_client text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n integer;
BEGIN
    IF p_email IS NULL OR btrim(p_email) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = 'email is required',
            DETAIL = jsonb_build_object('field', 'email')::text;
    END IF;
    DELETE FROM internal.login_attempt a
    WHERE a.email = lower(btrim(p_email))
      AND (p_client IS NULL OR a.client = internal.client_key(p_client));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION api.lift_login_throttle(text, text) IS
    'Forgets an email''s failed logins (from one client when given); returns how many.';
REVOKE ALL ON FUNCTION api.lift_login_throttle(text, text) FROM PUBLIC;
