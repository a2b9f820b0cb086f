"""The database layer: the worker's connection pool (pool), the error registry (registry), the
one call layer for the SQL API that routes and commands share (calls, and ops_calls for the
operations commands); and where the database runs: runtime (DATABASE_URL or the project's own
cluster), localpg (that cluster), migrate (yoyo), replicas (the read URL) and ha (a local
Patroni cluster, `python -m pyapp.db.ha`)."""
