"""pyapp.db.durable on a real PostgreSQL, with one connection per request as the app's role:
sales committed without waiting for the disk while a barrier runs share the next barrier, and
every one of them is on disk when its request is told so."""
from __future__ import annotations

import threading
import time

import psycopg

from pyapp.db.durable import Barriers

SALE = "SELECT set_config('synchronous_commit', 'off', true), pg_logical_emit_message(true, 'mk-test-sale', '')"
GATE_KEY = 914_202
# The barrier, held back while the test holds GATE_KEY, so that the others queue behind it.
GATED = f"SELECT pg_advisory_xact_lock_shared({GATE_KEY}), pg_logical_emit_message(true, 'marketplace.durable', '')"


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + 30  # only a real hang reaches it
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_sales_that_commit_during_a_barrier_share_the_next_and_are_on_disk(app_url, conn):
    barriers = Barriers()
    clients = [psycopg.connect(app_url, autocommit=True) for _ in range(4)]
    runs: list[int] = []
    results: dict[int, object] = {}
    try:
        for c in clients:
            barriers.opened(c)
        since = time.monotonic()

        def request(i: int) -> None:
            c = clients[i]
            try:
                c.execute(SALE)
                sale_end = c.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
                barriers.wait(c, since, run=lambda: (runs.append(i), c.execute(GATED)))
                results[i] = c.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (sale_end,)).fetchone()[0]
            except BaseException as exc:  # noqa: BLE001 - asserted below
                results[i] = exc

        conn.execute("SELECT pg_advisory_lock(%s)", (GATE_KEY,))
        leader = threading.Thread(target=request, args=(0,))
        leader.start()
        wait_until(lambda: conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                        ).fetchone()[0] == 1, "the first barrier never started")
        others = [threading.Thread(target=request, args=(i,)) for i in range(1, 4)]
        for t in others:
            t.start()
        wait_until(lambda: barriers.waiting() == 3, "the other requests never queued behind the barrier")
        assert runs == [0]
        conn.execute("SELECT pg_advisory_unlock(%s)", (GATE_KEY,))
        for t in [leader, *others]:
            t.join(60)
            assert not t.is_alive()
    finally:
        for c in clients:
            c.close()
    assert results == {0: True, 1: True, 2: True, 3: True}
    assert len(runs) == 2 and runs[0] == 0  # the first request's barrier, then one for the three others
