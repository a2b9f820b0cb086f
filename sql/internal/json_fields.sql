-- internal.json_text: a text field of a JSON object, checked for type and length; NULL when absent.
-- Raises: MKV00 when present but not a string of p_min..p_max characters. Callers: api functions.
CREATE OR REPLACE FUNCTION internal.json_text(p_obj jsonb, p_key text, p_min integer, p_max integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text;
BEGIN
    IF NOT p_obj ? p_key THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_obj -> p_key) <> 'string' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = format('%s must be a string', p_key),
            DETAIL = jsonb_build_object('field', p_key)::text;
    END IF;
    v := btrim(p_obj ->> p_key);
    IF length(v) NOT BETWEEN p_min AND p_max THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00',
            MESSAGE = format('%s must be %s to %s characters', p_key, p_min, p_max),
            DETAIL = jsonb_build_object('field', p_key, 'length', length(v))::text;
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION internal.json_text(jsonb, text, integer, integer) IS
    'Reads a string field of a JSON object, checking its type and length (MKV00).';
REVOKE ALL ON FUNCTION internal.json_text(jsonb, text, integer, integer) FROM PUBLIC;

-- internal.json_number: a numeric field of a JSON object, checked for type and range (and for
-- being whole when p_integer); NULL when absent.
-- Raises: MKV00 when present but not such a number. Callers: api functions.
CREATE OR REPLACE FUNCTION internal.json_number(
    p_obj jsonb, p_key text, p_min numeric, p_max numeric, p_integer boolean)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v numeric;
BEGIN
    IF NOT p_obj ? p_key THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_obj -> p_key) <> 'number' THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00', MESSAGE = format('%s must be a number', p_key),
            DETAIL = jsonb_build_object('field', p_key)::text;
    END IF;
    v := (p_obj ->> p_key)::numeric;
    IF v NOT BETWEEN p_min AND p_max OR (p_integer AND v <> trunc(v))
       OR (NOT p_integer AND v <> round(v, 2)) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKV00',
            MESSAGE = format('%s must be %s between %s and %s', p_key,
                             CASE WHEN p_integer THEN 'an integer' ELSE 'a number with at most 2 decimals' END,
                             p_min, p_max),
            DETAIL = jsonb_build_object('field', p_key)::text;
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION internal.json_number(jsonb, text, numeric, numeric, boolean) IS
    'Reads a numeric field of a JSON object, checking its type, range and scale (MKV00).';
REVOKE ALL ON FUNCTION internal.json_number(jsonb, text, numeric, numeric, boolean) FROM PUBLIC;
