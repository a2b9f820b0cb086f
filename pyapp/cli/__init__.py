"""The bodies of `python -m pyapp` commands (pyapp.__main__ parses the arguments), one module per
concern: migrations (migrate, rollback, status, verify), operations (backup, maintenance, alerts,
expire-orders), report, accounts (create-user, the demo data), serve (process supervision),
settings (webhook-secret, unthrottle, limits), expiry_schedule (pg_cron), deploy, smoke and race
(simulate-race; its small HTTP client serves smoke and deploy too); tables prints their tables.

Each takes the parsed arguments and returns an exit code, reads its settings through pyapp.config
and makes its database calls through the call layer, pyapp.db.calls and pyapp.db.ops_calls, on
an owner connection (pyapp.db.runtime.Database.session, or a pyapp.db.calls.Session around one):
no command writes SQL of its own.
"""
