-- api.error_codes: the one registry of every SQLSTATE the project raises.
-- Each code is in the project's own class MK (the SQL standard reserves classes 0-4 and A-H,
-- PostgreSQL uses 5, P, X and Y). The HTTP app loads this table at start-up to map errors, and a
-- test checks that the README's error table says the same.
-- Raises: nothing. Callers: anyone with EXECUTE (the HTTP app, DBAs, CI).
CREATE OR REPLACE FUNCTION api.error_codes()
RETURNS TABLE (sqlstate text, code text, http_status integer, title text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
        ('MK400', 'INSUFFICIENT_STOCK',     400, 'Stock insuficiente'),
        ('MKE00', 'EMPTY_CART',             400, 'The cart is empty'),
        ('MKV00', 'INVALID_ARGUMENT',       400, 'Invalid argument'),
        ('MK401', 'UNAUTHENTICATED',        401, 'Authentication required'),
        ('MKW01', 'INVALID_SIGNATURE',      401, 'Invalid signature'),
        ('MK403', 'FORBIDDEN',              403, 'Not allowed'),
        ('MK404', 'NOT_FOUND',              404, 'Not found'),
        ('MK409', 'CONCURRENCY_CONFLICT',   409, 'Concurrent modification'),
        ('MKC09', 'ALREADY_EXISTS',         409, 'Already exists'),
        ('MKS09', 'INVALID_STATE',          409, 'Not allowed in the current state'),
        ('MKQ09', 'MAX_PER_BUYER_EXCEEDED', 409, 'More than this product allows per buyer'),
        ('MKU09', 'TOO_MANY_UNPAID_ORDERS', 409, 'Too many unpaid orders'),
        ('MKI22', 'IDEMPOTENCY_KEY_REUSED', 422, 'Idempotency key reused with another payload'),
        ('MKT29', 'TOO_MANY_ATTEMPTS',      429, 'Too many attempts'),
        ('MK503', 'MAINTENANCE',            503, 'Service under maintenance'),
        ('MKN03', 'WEBHOOK_NOT_CONFIGURED', 503, 'Service unavailable')
$$;
COMMENT ON FUNCTION api.error_codes() IS
    'Registry of the project''s SQLSTATEs (class MK): code, HTTP status and title of each.';
REVOKE ALL ON FUNCTION api.error_codes() FROM PUBLIC;
