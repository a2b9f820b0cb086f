-- api.error_policy and api.error_codes: the one registry of every SQLSTATE the project raises,
-- with the HTTP policy of each.
-- Each project code is in its own class MK (the SQL standard reserves classes 0-4 and A-H,
-- PostgreSQL uses 5, P, X and Y). The policy also names the few SQLSTATEs of PostgreSQL's own that
-- the HTTP app answers with a problem instead of a 500: transient conflicts (40001 serialization
-- failure, 40P01 deadlock, 55P03 lock timeout) and 57014 (statement timeout). Per code:
--   http_status  the answer's status;
--   retryable    'yes': transient, the app retries the call itself (with backoff, a few times);
--                'detail': retried only when the error's DETAIL says "retryable": true;
--                'no': never retried;
--   retry_after  the Retry-After seconds sent with it (NULL: none); a DETAIL member "retryAfter"
--                overrides it for any status; a 'detail' code sends it only when retryable;
--   description  what it means, for the API document (GET /openapi.json is generated from it),
--                and the problem's detail for PostgreSQL's own codes (their messages are not
--                for clients).
-- The HTTP app loads the policy from app.error_policy() on its first request and the OpenAPI
-- texts from this file; a test checks that the README's error table says the same.
-- Raises: nothing. Callers: anyone with EXECUTE (the HTTP app, the CLI, DBAs, CI).
CREATE OR REPLACE FUNCTION api.error_policy()
RETURNS TABLE (sqlstate text, code text, http_status integer, title text, retryable text,
               retry_after integer, description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
        ('MK400', 'INSUFFICIENT_STOCK',     400, 'Stock insuficiente', 'no', NULL::integer,
         'title "Stock insuficiente", with `products`: each short product with requested and available'),
        ('MKE00', 'EMPTY_CART',             400, 'The cart is empty', 'no', NULL,
         'checkout of an empty cart'),
        ('MKV00', 'INVALID_ARGUMENT',       400, 'Invalid argument', 'no', NULL,
         'wrong types, missing fields, out-of-range values; also some that depend on the state: a cart line growing past 10000 units, an order total past 99,999,999.99, a stock raise past 1,000,000,000 units with those of open orders'),
        ('MK401', 'UNAUTHENTICATED',        401, 'Authentication required', 'no', NULL,
         'a missing, invalid, expired or revoked bearer token'),
        ('MKW01', 'INVALID_SIGNATURE',      401, 'Invalid signature', 'no', NULL,
         'a missing, bad, stale or reused webhook signature'),
        ('MK403', 'FORBIDDEN',              403, 'Not allowed', 'no', NULL,
         'the user''s role may not do this'),
        ('MK404', 'NOT_FOUND',              404, 'Not found', 'no', NULL,
         'an unknown route or resource, or another user''s order'),
        ('MK409', 'CONCURRENCY_CONFLICT',   409, 'Concurrent modification', 'detail', 1,
         'a stale version, with `currentVersion`; or transient conflicts that outlasted 4 attempts, with `Retry-After`'),
        ('MKC09', 'ALREADY_EXISTS',         409, 'Already exists', 'no', NULL,
         'the email is taken'),
        ('MKS09', 'INVALID_STATE',          409, 'Not allowed in the current state', 'no', NULL,
         'the order or product is not in a state that allows this'),
        ('MKQ09', 'MAX_PER_BUYER_EXCEEDED', 409, 'More than this product allows per buyer', 'no', NULL,
         'the product''s `maxPerBuyer` units per buyer, counting what the buyer holds unpaid'),
        ('MKU09', 'TOO_MANY_UNPAID_ORDERS', 409, 'Too many unpaid orders', 'no', NULL,
         'checkout: the buyer already holds `maxUnpaidOrders` unpaid orders; nothing is created and the cart is kept'),
        ('MKI22', 'IDEMPOTENCY_KEY_REUSED', 422, 'Idempotency key reused with another payload', 'no', NULL,
         'the Idempotency-Key was already used with another payload'),
        ('MKT29', 'TOO_MANY_ATTEMPTS',      429, 'Too many attempts', 'no', 30,
         '5 failed logins of one email from one client within 15 minutes, that pair only and without checking the password; or more sign-ups from one client in an hour than REGISTRATIONS_PER_CLIENT_PER_HOUR; `Retry-After` and `retryAfter` give the seconds to wait'),
        ('MK503', 'MAINTENANCE',            503, 'Service under maintenance', 'no', 30,
         'writes paused'),
        ('MKN03', 'WEBHOOK_NOT_CONFIGURED', 503, 'Service unavailable', 'no', 30,
         'no webhook key set'),
        ('40001', 'CONCURRENCY_CONFLICT',   409, 'Concurrent modification', 'yes', 1,
         'PostgreSQL''s serialization failure'),
        ('40P01', 'CONCURRENCY_CONFLICT',   409, 'Concurrent modification', 'yes', 1,
         'PostgreSQL''s deadlock detected'),
        ('55P03', 'CONCURRENCY_CONFLICT',   409, 'Concurrent modification', 'yes', 1,
         'PostgreSQL''s lock timeout'),
        ('57014', 'TIMEOUT',                503, 'Service unavailable', 'no', 5,
         'the database took too long to answer')
$$;
COMMENT ON FUNCTION api.error_policy() IS
    'Registry of the SQLSTATEs answered by the HTTP app: code, HTTP status, title, retry policy, Retry-After and description.';
REVOKE ALL ON FUNCTION api.error_policy() FROM PUBLIC;

-- api.error_codes: the project's own codes (class MK) of the registry above, as DBAs read them.
-- Raises: nothing. Callers: anyone with EXECUTE (DBAs, CI, app.error_codes for older app servers).
CREATE OR REPLACE FUNCTION api.error_codes()
RETURNS TABLE (sqlstate text, code text, http_status integer, title text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.sqlstate, p.code, p.http_status, p.title FROM api.error_policy() AS p
    WHERE p.sqlstate LIKE 'MK%'
$$;
COMMENT ON FUNCTION api.error_codes() IS
    'Registry of the project''s SQLSTATEs (class MK): code, HTTP status and title of each.';
REVOKE ALL ON FUNCTION api.error_codes() FROM PUBLIC;
