-- Per-minute checkout figures flushed by the HTTP workers through api.record_checkout_stats, so
-- that `python -m pyapp report` and `alerts` read them after a server restart.
-- depends: 0004_api_functions

SET LOCAL lock_timeout = '5s';

-- One row per UTC minute: the sum over every worker of what it saw in that minute.
CREATE TABLE internal.checkout_stats (
    minute             timestamptz PRIMARY KEY,
    success            bigint NOT NULL DEFAULT 0 CHECK (success >= 0),
    insufficient_stock bigint NOT NULL DEFAULT 0 CHECK (insufficient_stock >= 0),
    conflict           bigint NOT NULL DEFAULT 0 CHECK (conflict >= 0),
    empty_cart         bigint NOT NULL DEFAULT 0 CHECK (empty_cart >= 0),
    error              bigint NOT NULL DEFAULT 0 CHECK (error >= 0),
    retries            bigint NOT NULL DEFAULT 0 CHECK (retries >= 0),
    conflicts          bigint NOT NULL DEFAULT 0 CHECK (conflicts >= 0),
    latency_sum_s      double precision NOT NULL DEFAULT 0 CHECK (latency_sum_s >= 0)
);
COMMENT ON TABLE internal.checkout_stats IS
    'Checkouts by outcome, retries and ConcurrencyErrors (every route) per minute, summed over the HTTP workers.';

-- Checkout latency histogram per minute: n checkouts took at most le seconds and more than the
-- next lower bound (not cumulative). le = ''Infinity'' is the overflow bucket.
CREATE TABLE internal.checkout_latency (
    minute timestamptz NOT NULL REFERENCES internal.checkout_stats (minute) ON DELETE CASCADE,
    le     double precision NOT NULL CHECK (le > 0),
    n      bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (minute, le)
);
COMMENT ON TABLE internal.checkout_latency IS
    'Checkout latency bucket counts per minute (non-cumulative; le = Infinity is the overflow).';

REVOKE ALL ON internal.checkout_stats, internal.checkout_latency FROM PUBLIC;
