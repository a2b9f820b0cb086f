"""The bodies of `python -m pyapp` commands (pyapp.__main__ parses the arguments), by concern:
migrations (migrate, rollback, status, verify), operations (backup, maintenance, alerts,
expire-orders), report, accounts (create-user, the demo data) and serve (process supervision).
Each takes the parsed arguments and returns an exit code; each makes its database calls through
pyapp.db.calls on one owner session (pyapp.db.runtime.Database.session) and reads its settings
through pyapp.config. Other commands have modules of their own: pyapp.cli.settings,
pyapp.cli.expiry_schedule, pyapp.cli.deploy, pyapp.cli.smoke and pyapp.cli.race (simulate-race)."""
