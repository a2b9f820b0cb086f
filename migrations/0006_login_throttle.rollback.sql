SET LOCAL lock_timeout = '5s';
DROP TABLE internal.login_attempt;
