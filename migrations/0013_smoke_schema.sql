-- The smoke test's own account: `python -m pyapp smoke` checks out and cancels one unit of a
-- dedicated product over HTTP as this account, and what it does must not count as business
-- (report, alerts, /metrics, the dashboard leave its orders out; the catalogue does not list its
-- product). Catalogue-only: a new, empty table.
-- depends: 0012_app_boundary_functions

SET LOCAL lock_timeout = '5s';

-- One row per smoke account, with the unlisted product it buys. The account has no usable
-- password (nobody logs in as it); the smoke command mints a short-lived token as the owner.
CREATE TABLE internal.smoke_account (
    user_id     text PRIMARY KEY REFERENCES "User" (id) ON DELETE CASCADE,
    product_id  text NOT NULL UNIQUE REFERENCES "Product" (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.smoke_account IS
    'The smoke test''s accounts and their unlisted products: their orders are left out of report, alerts, /metrics and the dashboard.';
REVOKE ALL ON internal.smoke_account FROM PUBLIC;
