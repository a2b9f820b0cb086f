-- Folds the two columns back into error, as the outcomes were counted before.
SET LOCAL lock_timeout = '5s';
UPDATE internal.checkout_stats SET error = error + client_error + maintenance
WHERE client_error > 0 OR maintenance > 0;
ALTER TABLE internal.checkout_stats DROP COLUMN client_error, DROP COLUMN maintenance;
COMMENT ON COLUMN internal.checkout_stats.error IS NULL;
