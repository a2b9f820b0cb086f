"""Durability barriers for early-released sales, shared by the requests of one worker process.

A checkout that queued for a product may commit without waiting for the disk (api.checkout's
early lock release, docs/design.md); its answer then waits for a barrier: a later commit that
writes WAL, whose flush covers every earlier commit of that server. On a popular product most
checkouts of a worker need one at about the same time, and one barrier serves them all when it
meets two conditions for each sale it covers:

- it *started* after the sale committed (its commit record then follows the sale's in the WAL);
- its connection reached the same server as the sale's, and that server did not lose its
  unflushed WAL in between. The connection is keyed by the server's address and postmaster start
  time (another server, or a restarted one, has another key), and it must have been open since
  before the sale's request took its connection: a crash that restarts the server's backends
  (which keeps the postmaster and its start time) ends every connection open at the time, so a
  connection that lived through the sale and the barrier proves there was none.

A barrier that fails covers nobody: the requests that waited for it run the next one themselves.
"""
from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

import psycopg

BARRIER = "SELECT pg_logical_emit_message(true, 'marketplace.durable', '')"
SERVER_KEY = "SELECT pg_postmaster_start_time()::text"


class _Server:
    """The barriers of one server: how many were started, and the newest that succeeded."""

    __slots__ = ("cond", "started", "running", "done", "done_opened", "waiting")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.started = 0  # barriers started so far (each one's number)
        self.running = False
        self.done = 0  # number of the newest barrier that succeeded
        self.done_opened = float("inf")  # when its connection was opened (monotonic)
        self.waiting = 0  # requests waiting for another request's barrier


class Barriers:
    """One process's barriers, grouped by server. `opened(conn)` must be called when the pool
    opens a connection (its `configure=`); `wait(conn, since)` returns once a barrier has covered
    a sale committed on `conn` by a request that took `conn` at monotonic time `since`."""

    def __init__(self, barrier: str = BARRIER) -> None:
        self._barrier = barrier
        self._lock = threading.Lock()
        self._servers: dict[str, _Server] = {}
        self._conns: weakref.WeakKeyDictionary[psycopg.Connection, tuple[str, float]] = weakref.WeakKeyDictionary()

    def opened(self, conn: psycopg.Connection) -> None:
        """Records the server and the time of a connection the pool has just opened."""
        row = conn.execute(SERVER_KEY).fetchone()
        info = conn.info
        key = f"{info.host}:{info.port}@{row[0] if row else ''}"
        with self._lock:
            self._conns[conn] = (key, time.monotonic())

    def waiting(self) -> int:
        """How many requests wait for a barrier another request runs."""
        with self._lock:
            servers = list(self._servers.values())
        return sum(s.waiting for s in servers)

    def _server(self, conn: psycopg.Connection) -> tuple[_Server | None, float]:
        with self._lock:
            known = self._conns.get(conn)
            if known is None:
                return None, 0.0
            key, opened = known
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = _Server()
            return server, opened

    def wait(self, conn: psycopg.Connection, since: float, run: Callable[[], object] | None = None) -> None:
        """Blocks until the sale just committed on `conn` is on disk. `run` (default: the barrier
        statement on `conn`) runs the barrier when this request has to start one."""
        def own() -> None:
            if run is None:
                conn.execute(self._barrier)
            else:
                run()

        server, opened = self._server(conn)
        if server is None:  # a connection opened without opened(): not shared
            own()
            return
        with server.cond:
            needed = server.started + 1  # the first barrier that starts after this sale's commit
            while True:
                if server.done >= needed and server.done_opened < since:
                    return
                if not server.running:
                    server.running = True
                    server.started += 1
                    number = server.started
                    break
                server.waiting += 1
                try:
                    server.cond.wait()
                finally:
                    server.waiting -= 1
        ok = False
        try:
            own()
            ok = True
        finally:
            with server.cond:
                server.running = False
                if ok and number > server.done:
                    server.done, server.done_opened = number, opened
                server.cond.notify_all()
