-- internal.client_key: the key a client address is throttled under. An IPv4 address stands for
-- itself (an IPv4-mapped IPv6 address too); an IPv6 address for its /64, the smallest network a
-- single subscriber is usually given, so that one host cannot walk its own /64 past a limit.
-- Anything that is not an address (a Unix socket has none) is kept as given, cut to 100 chars.
-- Raises: nothing. Callers: app.register, app.login_parameters, app.login, api.lift_login_throttle.
CREATE OR REPLACE FUNCTION internal.client_key(p_client text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v inet;
BEGIN
    IF p_client IS NULL OR p_client !~ '^[0-9A-Fa-f:.]{2,45}$' THEN
        RETURN coalesce(left(btrim(p_client), 100), '');
    END IF;
    BEGIN
        v := p_client::inet;
    EXCEPTION WHEN invalid_text_representation THEN
        RETURN left(p_client, 100);
    END;
    IF family(v) = 6 AND v << inet '::ffff:0:0/96' THEN
        RETURN host(('0.0.0.0'::inet + (v - '::ffff:0:0'::inet)));
    END IF;
    IF family(v) = 6 THEN
        RETURN network(set_masklen(v, 64))::text;
    END IF;
    RETURN host(v);
END
$$;
COMMENT ON FUNCTION internal.client_key(text) IS
    'Throttling key of a client address: IPv4 as is, IPv6 by its /64, anything else as given.';
REVOKE ALL ON FUNCTION internal.client_key(text) FROM PUBLIC;
