"""Settings from the environment without a database (pyapp.config): defaults, bounds and the clear
refusal of a malformed value."""
from __future__ import annotations

import ipaddress

import pytest

from pyapp.config import Config

VARS = ("THREADS", "DB_POOL_SIZE", "ORDER_HOLD_MINUTES", "PORT", "METRICS_DB_CACHE_SECONDS", "TRUSTED_PROXIES",
        "MAX_UNPAID_ORDERS", "DB_PGBOUNCER", "DB_RELEASE_EARLY", "WORKERS", "WEB_CONCURRENCY", "HOST",
        "DB_POOL_TIMEOUT_S")


@pytest.fixture
def env(monkeypatch):
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(env):
    cfg = Config.from_env()
    assert (cfg.host, cfg.port, cfg.order_hold_minutes, cfg.threads, cfg.pool_size) == ("127.0.0.1", 8080, 30, 8, 8)
    assert (cfg.pool_timeout_s, cfg.metrics_cache_s, cfg.pgbouncer, cfg.release_early) == (3.0, 15, False, True)
    assert cfg.trusted_proxies == () and cfg.max_unpaid_orders is None


def test_the_pool_follows_the_threads_unless_set(env):
    env.setenv("THREADS", "4")
    assert Config.from_env().pool_size == 4
    env.setenv("DB_POOL_SIZE", "12")
    assert Config.from_env().pool_size == 12


@pytest.mark.parametrize("name, value, says", [
    ("ORDER_HOLD_MINUTES", "0", "ORDER_HOLD_MINUTES must be between 1 and 10080, not 0"),
    ("ORDER_HOLD_MINUTES", "ten", "ORDER_HOLD_MINUTES must be an integer, not 'ten'"),
    ("PORT", "70000", "PORT must be between 1 and 65535"),
    ("METRICS_DB_CACHE_SECONDS", "16", "METRICS_DB_CACHE_SECONDS must be between 0 and 15"),
    ("MAX_UNPAID_ORDERS", "0", "MAX_UNPAID_ORDERS must be between 1 and 1000000"),
    ("DB_PGBOUNCER", "2", "DB_PGBOUNCER must be between 0 and 1"),
    ("TRUSTED_PROXIES", "10.0.0.1,not-an-address", "TRUSTED_PROXIES must list IP addresses or networks"),
])
def test_a_malformed_setting_stops_with_its_name(env, name, value, says):
    env.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        Config.from_env()
    assert says in str(info.value)


def test_values_in_range(env):
    env.setenv("ORDER_HOLD_MINUTES", " 45 ")
    env.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7")
    env.setenv("DB_RELEASE_EARLY", "0")
    cfg = Config.from_env()
    assert cfg.order_hold_minutes == 45 and cfg.release_early is False
    assert cfg.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.7/32"))


def test_the_hold_window_is_validated_in_one_place(env):
    from pyapp import config

    assert config.hold_minutes() == 30 and config.hold_minutes(180) == 180
    env.setenv("ORDER_HOLD_MINUTES", "45")
    assert config.hold_minutes() == 45 and config.hold_minutes(5) == 5  # the argument wins
    assert config.hold_minutes(0) == 0  # expire-orders --hold-minutes 0: every unpaid order, now
    with pytest.raises(SystemExit) as info:
        config.hold_minutes(-1)
    assert "must not be negative" in str(info.value)
    env.setenv("ORDER_HOLD_MINUTES", "0")
    with pytest.raises(SystemExit):
        config.hold_minutes()


def test_database_urls(env):
    from pyapp import config

    env.delenv("DATABASE_URL", raising=False)
    env.delenv("APP_DATABASE_URL", raising=False)
    assert config.database_urls() == ("", "")
    env.setenv("DATABASE_URL", "postgresql://owner@db/m")
    assert config.database_urls() == ("postgresql://owner@db/m", "postgresql://owner@db/m")
    env.setenv("APP_DATABASE_URL", "postgresql://app@db/m")
    assert config.database_urls() == ("postgresql://owner@db/m", "postgresql://app@db/m")
