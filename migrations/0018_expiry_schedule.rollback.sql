SET LOCAL lock_timeout = '5s';
DROP TABLE internal.expiry_schedule;
DROP TABLE internal.expiry_run;
