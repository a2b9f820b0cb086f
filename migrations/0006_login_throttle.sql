-- Failed-login records for api.begin_login's throttle (per email and per client address), so that
-- every HTTP worker shares one count.
-- depends: 0005_checkout_stats

SET LOCAL lock_timeout = '5s';

-- One row per admitted login attempt: a failure, or a success in flight (api.issue_token deletes
-- the account's rows on success). email is lower-cased as typed, registered or not.
CREATE TABLE internal.login_attempt (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text NOT NULL,
    client       text NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempt_email_idx ON internal.login_attempt (email, attempted_at);
CREATE INDEX login_attempt_client_idx ON internal.login_attempt (client, attempted_at);
CREATE INDEX login_attempt_attempted_at_idx ON internal.login_attempt (attempted_at);
COMMENT ON TABLE internal.login_attempt IS
    'Login attempts not (yet) successful, per lower-cased email and client address; read by api.begin_login.';

REVOKE ALL ON internal.login_attempt FROM PUBLIC;
