"""pyapp/gunicorn_conf.py without a server: the HTTP parser it selects, its refusal to start
without that parser, and the response class it installs in the workers
(pyapp/gunicorn_response.py), which writes to a fake socket here."""
from __future__ import annotations

import sys
import types

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

from pyapp import gunicorn_conf
from pyapp.gunicorn_response import ONE_SEND_MAX, OneSendResponse


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


class FakeSocket:
    def __init__(self):
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))


class FakeRequest:
    def __init__(self, method="GET", version=(1, 1)):
        self.method, self.version = method, version

    def should_close(self) -> bool:
        return False


def respond(cls, status, headers, chunks, method="GET", version=(1, 1)) -> list[bytes]:
    """What a gthread worker does with a WSGI answer (start_response, each write, close), on a
    fake socket: the list of its sends."""
    sock = FakeSocket()
    resp = cls(FakeRequest(method, version), sock, Config())
    resp.start_response(status, headers)
    for chunk in chunks:
        resp.write(chunk)
    resp.close()
    return sock.sends


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch):
    """One Date header for every response of a test, so that two responses compare byte for byte."""
    monkeypatch.setattr(util, "http_date", lambda *a: "Tue, 01 Dec 2026 00:00:00 GMT")


BODY = b'{"status":"ok"}'
JSON = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def test_a_body_complete_in_its_first_write_goes_out_with_the_headers_in_one_send():
    sends = respond(OneSendResponse, "200 OK", JSON, [BODY])
    assert len(sends) == 1
    assert sends[0].startswith(b"HTTP/1.1 200 OK\r\n") and sends[0].endswith(b"\r\n\r\n" + BODY)
    assert sends == [b"".join(respond(wsgi.Response, "200 OK", JSON, [BODY]))]  # the same bytes


def test_an_empty_body_and_a_body_past_content_length_are_one_send_of_gunicorns_bytes():
    empty = [("Content-Length", "0")]
    assert respond(OneSendResponse, "201 Created", empty, [b""]) == [
        b"".join(respond(wsgi.Response, "201 Created", empty, [b""]))]
    sends = respond(OneSendResponse, "200 OK", JSON, [BODY + b"extra"])
    assert sends == [b"".join(respond(wsgi.Response, "200 OK", JSON, [BODY + b"extra"]))]
    assert sends[0].endswith(b"\r\n\r\n" + BODY)  # cut to Content-Length, as gunicorn does


@pytest.mark.parametrize("case, status, headers, chunks, method, version", [
    ("a body in two writes", "200 OK", JSON, [BODY[:5], BODY[5:]], "GET", (1, 1)),
    ("no Content-Length: chunked", "200 OK", [("Content-Type", "text/plain")], [b"abc", b"def"], "GET", (1, 1)),
    ("no Content-Length over HTTP/1.0", "200 OK", [], [b"abc"], "GET", (1, 0)),
    ("a HEAD answer", "200 OK", JSON, [BODY], "HEAD", (1, 1)),
    ("a 304", "304 Not Modified", [], [], "GET", (1, 1)),
    ("a body past ONE_SEND_MAX", "200 OK", [("Content-Length", str(ONE_SEND_MAX + 1))],
     [b"x" * (ONE_SEND_MAX + 1)], "GET", (1, 1)),
])
def test_any_other_answer_is_sent_exactly_as_gunicorn_sends_it(case, status, headers, chunks, method, version):
    ours = respond(OneSendResponse, status, headers, chunks, method, version)
    assert ours == respond(wsgi.Response, status, headers, chunks, method, version), case


def test_a_body_in_two_writes_keeps_gunicorns_separate_sends():
    assert len(respond(OneSendResponse, "200 OK", JSON, [BODY[:5], BODY[5:]])) == 3


def test_post_worker_init_makes_gunicorn_build_the_one_send_response(monkeypatch):
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # restored after the test
    gunicorn_conf.post_worker_init(worker=None)
    assert wsgi.Response is OneSendResponse
