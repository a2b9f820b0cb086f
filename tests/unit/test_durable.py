"""pyapp.db.durable without a database: which barrier covers which sale. Connections are fakes
that record the statements they run; a barrier can be held open to let other requests queue."""
from __future__ import annotations

import threading
import time

import pytest

from pyapp.db.durable import BARRIER, Barriers


class FakeInfo:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port


class FakeConn:
    """Answers the server-key query with `started`; runs the barrier, optionally held by `gate`
    or failing with `fail`."""

    def __init__(self, started: str = "2026-12-01 00:00:00+00", host: str = "db", port: int = 5432):
        self.info = FakeInfo(host, port)
        self.started = started
        self.barriers = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail: Exception | None = None

    def execute(self, query: str, params=()):
        if query == BARRIER:
            self.entered.set()
            if self.gate is not None:
                assert self.gate.wait(30), "gate never opened"
            if self.fail is not None:
                raise self.fail
            self.barriers += 1
            return self
        self._row = (self.started,)
        return self

    def fetchone(self):
        return self._row


def opened(barriers: Barriers, *conns: FakeConn) -> None:
    for c in conns:
        barriers.opened(c)


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + 30  # only a real hang reaches it
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def run_waiters(barriers: Barriers, conns, since: float) -> list[BaseException | None]:
    results: list[BaseException | None] = [None] * len(conns)

    def go(i, c):
        try:
            barriers.wait(c, since)
        except BaseException as exc:  # noqa: BLE001 - asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    return results, threads


def test_alone_a_request_runs_its_own_barrier_on_its_connection():
    b, c = Barriers(), FakeConn()
    opened(b, c)
    b.wait(c, time.monotonic())
    b.wait(c, time.monotonic())
    assert c.barriers == 2  # a finished barrier never covers a later sale


def test_a_connection_the_pool_did_not_announce_runs_its_own():
    b = Barriers()
    known, unknown = FakeConn(), FakeConn()
    opened(b, known)
    b.wait(unknown, time.monotonic())
    assert unknown.barriers == 1 and known.barriers == 0


def test_requests_that_queue_behind_a_running_barrier_share_the_next_one():
    b = Barriers()
    leader, *others = conns = [FakeConn() for _ in range(5)]
    opened(b, *conns)
    since = time.monotonic()
    leader.gate = threading.Event()
    first, t0 = run_waiters(b, [leader], since)
    assert leader.entered.wait(30)
    # These sales committed while the leader's barrier ran: it may have started before them, so
    # it covers none of them; one of them runs the next barrier, which covers all four.
    results, threads = run_waiters(b, others, since)
    wait_until(lambda: b.waiting() == len(others), "the others never queued")
    assert sum(c.barriers for c in others) == 0
    leader.gate.set()
    for t in t0 + threads:
        t.join(30)
        assert not t.is_alive()
    assert first == [None] and results == [None] * len(others)
    assert leader.barriers == 1
    assert sum(c.barriers for c in others) == 1


def test_a_barrier_on_a_connection_opened_after_the_request_took_its_own_covers_nothing():
    """After a crash that restarted the server's backends (same postmaster, same start time) a
    new connection reaches a server that may have lost the sale: its barrier proves nothing.
    Two requests queue behind a running barrier; either may lead the next one. Whenever the
    young connection's request leads, the old one's must still run its own (over 20 tries each
    order comes up; the old request never goes without a barrier of a connection it may trust)."""
    for _ in range(20):
        b = Barriers()
        first, old = FakeConn(), FakeConn()
        opened(b, first, old)
        since = time.monotonic()
        young = FakeConn()
        while time.monotonic() == since:
            time.sleep(0.001)
        opened(b, young)  # opened after `since`
        first.gate = threading.Event()
        r0, t0 = run_waiters(b, [first], since)
        assert first.entered.wait(30)
        old_result, t1 = run_waiters(b, [old], since)
        young_result, t2 = run_waiters(b, [young], time.monotonic())
        wait_until(lambda b=b: b.waiting() == 2, "the two requests never queued")
        first.gate.set()
        for t in t0 + t1 + t2:
            t.join(30)
            assert not t.is_alive()
        assert r0 == old_result == young_result == [None]
        assert first.barriers == 1
        assert old.barriers == 1, "a barrier of a connection opened after the sale's request covered it"
        assert young.barriers <= 1


@pytest.mark.parametrize("other", [dict(started="2026-12-01 00:05:00+00"), dict(host="replica"), dict(port=5433)],
                         ids=["restarted server", "other host", "other port"])
def test_barriers_are_not_shared_across_servers(other):
    b = Barriers()
    here, there = FakeConn(), FakeConn(**other)
    opened(b, here, there)
    since = time.monotonic()
    there.gate = threading.Event()
    first, t0 = run_waiters(b, [there], since)
    assert there.entered.wait(30)
    b.wait(here, since)  # does not wait for the other server's barrier, runs its own
    assert here.barriers == 1
    there.gate.set()
    for t in t0:
        t.join(30)
    assert there.barriers == 1


def test_a_failed_barrier_covers_nobody_and_the_waiters_run_the_next():
    b = Barriers()
    leader, *others = conns = [FakeConn() for _ in range(3)]
    opened(b, *conns)
    since = time.monotonic()
    leader.gate, leader.fail = threading.Event(), RuntimeError("connection lost")
    first, t0 = run_waiters(b, [leader], since)
    assert leader.entered.wait(30)
    results, threads = run_waiters(b, others, since)
    wait_until(lambda: b.waiting() == len(others), "the others never queued")
    leader.gate.set()
    for t in t0 + threads:
        t.join(30)
    assert isinstance(first[0], RuntimeError)  # the leader's request fails, as it would alone
    assert results == [None, None]
    assert sum(c.barriers for c in others) == 1


def test_a_request_that_finds_no_barrier_running_starts_one_at_once():
    """needed = started + 1: a barrier that finished before the sale counts for nothing."""
    b = Barriers()
    a, c = FakeConn(), FakeConn()
    opened(b, a, c)
    b.wait(a, time.monotonic())
    b.wait(c, time.monotonic())
    assert (a.barriers, c.barriers) == (1, 1)
