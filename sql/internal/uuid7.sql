-- internal.uuid7: a version-7 UUID (RFC 9562): the first 48 bits are Unix time in milliseconds,
-- the rest random (74 random bits, against 122 in version 4). Ids made by it sort by creation
-- time, so a new row's key lands on the right-most page of its primary-key index instead of a
-- random one: after each checkpoint, far fewer index pages are written to the WAL in full. It
-- is the default id of "Order", "OrderItem" and "CartItem" (migration 0008), and api.checkout
-- names its orders with it.
-- One SELECT of one expression, no SET clause: the planner inlines it into the caller.
-- Raises: nothing. Callers: api.checkout, column defaults.
CREATE OR REPLACE FUNCTION internal.uuid7()
RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    -- Overwrite bytes 1-6 of a random (version 4) UUID with the time, then turn its version
    -- nibble 0100 into 0111 (bits 52 and 53 of the bytea); the variant bits stay as they are.
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
COMMENT ON FUNCTION internal.uuid7() IS
    'A version-7 UUID: 48 bits of Unix time in milliseconds, then random bits; sorts by creation time.';
REVOKE ALL ON FUNCTION internal.uuid7() FROM PUBLIC;
