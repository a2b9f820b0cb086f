"""The database layer: the worker's connection pool (pool), the error registry (registry) and the
one call layer for the SQL API that routes and commands share (calls)."""
