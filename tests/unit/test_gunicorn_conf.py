"""pyapp/gunicorn_conf.py without a server: the HTTP parser it selects and its refusal to start
without that parser."""
from __future__ import annotations

import sys
import types

import pytest
from gunicorn.config import Config

from pyapp import gunicorn_conf


def test_the_conf_selects_gunicorns_c_parser_by_a_name_gunicorn_accepts():
    cfg = Config()
    cfg.set("http_parser", gunicorn_conf.http_parser)
    assert cfg.http_parser == "fast"


def test_the_parser_check_passes_with_the_installed_parser():
    gunicorn_conf._check_fast_parser()


def test_the_parser_check_refuses_when_the_parser_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "gunicorn_h1c", None)  # what a failed import leaves behind
    with pytest.raises(RuntimeError, match="needs gunicorn_h1c, which cannot be imported"):
        gunicorn_conf._check_fast_parser()


def test_the_parser_check_refuses_a_parser_without_the_limits_gunicorn_needs(monkeypatch):
    old = types.ModuleType("gunicorn_h1c")
    old.__version__ = "0.4.0"
    monkeypatch.setitem(sys.modules, "gunicorn_h1c", old)
    with pytest.raises(RuntimeError, match="gunicorn_h1c 0.4.0 is too old"):
        gunicorn_conf._check_fast_parser()


def test_on_starting_refuses_before_it_prepares_anything(monkeypatch, tmp_path):
    metrics = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    monkeypatch.setitem(sys.modules, "gunicorn_h1c", None)
    with pytest.raises(RuntimeError, match="gunicorn_h1c"):
        gunicorn_conf.on_starting(server=None)
    assert not metrics.exists()
