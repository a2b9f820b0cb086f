"""pyapp/server.py without serving: the granian settings it derives from the environment, its
refusal of a log level granian does not know, the metrics folder it prepares before the workers
are forked, and the loader each worker calls."""
from __future__ import annotations

import multiprocessing.util
import os

import pytest
from granian.constants import HTTPModes, Interfaces

from pyapp import config, server


def built(monkeypatch, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return server.build(config.Config.from_env(), server.log_level())


def test_the_server_takes_its_address_and_concurrency_from_the_environment(monkeypatch):
    srv = built(monkeypatch, HOST="127.0.0.9", PORT="8123", WORKERS="3", THREADS="5")
    assert (srv.bind_addr, srv.bind_port, srv.workers, srv.blocking_threads) == ("127.0.0.9", 8123, 3, 5)
    assert srv.interface == Interfaces.WSGI and srv.target == "pyapp.wsgi:app"


def test_the_server_speaks_http1_with_bounded_heads_and_a_graceful_stop(monkeypatch):
    srv = built(monkeypatch)
    assert srv.http == HTTPModes.http1 and not srv.websockets
    h1 = srv.http1_settings
    assert h1.keep_alive and h1.header_read_timeout == server.HEAD_TIMEOUT_MS
    assert h1.max_buffer_size == server.HEAD_BUFFER_BYTES
    assert srv.workers_kill_timeout == server.GRACE_SECONDS
    assert srv.respawn_failed_workers and not srv.log_access


@pytest.mark.parametrize("value, level", [(None, "warning"), ("", "warning"), ("DEBUG", "debug"), (" info ", "info")])
def test_log_level_defaults_to_warning(monkeypatch, value, level):
    if value is None:
        monkeypatch.delenv("SERVER_LOGLEVEL", raising=False)
    else:
        monkeypatch.setenv("SERVER_LOGLEVEL", value)
    assert server.log_level() == level


def test_an_unknown_log_level_is_refused(monkeypatch):
    monkeypatch.setenv("SERVER_LOGLEVEL", "loud")
    with pytest.raises(SystemExit, match="SERVER_LOGLEVEL must be one of .*not 'loud'"):
        server.log_level()


def test_a_named_metrics_folder_is_made_or_emptied_of_old_counters(monkeypatch, tmp_path):
    folder = tmp_path / "prom"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    m = server.MetricsFolder()
    assert m.prepare() == str(folder) and folder.is_dir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "notes.txt").write_text("kept")
    m.prepare()
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    m.remove()
    assert folder.is_dir()  # a folder the operator named is never removed


def test_without_a_named_folder_a_private_one_is_made_and_removed(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    m = server.MetricsFolder()
    path = m.prepare()
    try:
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path and os.path.isdir(path)
    finally:
        m.remove()
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert not os.path.exists(path)


def test_the_loader_gives_the_app_and_registers_the_exit_step(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    registered = []
    monkeypatch.setattr(multiprocessing.util, "Finalize",
                        lambda obj, fn, exitpriority=None: registered.append((obj, fn, exitpriority)))
    from pyapp.wsgi import app
    assert server.load_app(server.TARGET) is app
    assert registered == [(None, server.worker_exit, 10)]
    with pytest.raises(ValueError, match="unexpected target"):
        server.load_app("elsewhere:app")
