-- The smoke account and its product stay as ordinary rows (data is never dropped by a rollback):
-- afterwards the product is listed and its orders count like any other.
SET LOCAL lock_timeout = '5s';
DROP TABLE internal.smoke_account;
