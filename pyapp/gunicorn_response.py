"""One send per response: gunicorn's HTTP/1 Response, but a response whose whole body comes in its
first write goes out in one sendall (status line, headers and body together).

gunicorn's Response writes the headers and then each body chunk with a sendall of its own, so a
small JSON answer (all of the app's answers: Bottle hands gunicorn the body as one bytes object
with its Content-Length) costs two send system calls, and two TCP segments, where one would do.
OneSendResponse lets gunicorn do everything it does (the status line, its own headers, the
no-body rules of HEAD, 204 and 304, the Content-Length bookkeeping) into a buffer and sends that
buffer once. Anything else (a body in several writes, chunked framing, sendfile, a body larger
than ONE_SEND_MAX, where the copy would cost more than the call it saves) takes gunicorn's path.

gunicorn has no setting for the response class of its workers: wsgi.create() takes one (HTTP/2
passes its own) and otherwise uses the module's Response. install(), called in each worker by
the post_worker_init hook of pyapp/gunicorn_conf.py, points that name at OneSendResponse; the
master and gunicorn's own error pages keep the original class.
"""
from __future__ import annotations

from gunicorn.http import wsgi

ONE_SEND_MAX = 64 * 1024


class _Buffer:
    """Stands in for the socket while gunicorn writes a response into it."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(data)


class OneSendResponse(wsgi.Response):
    """See the module's docstring."""

    def write(self, arg):
        if (self.headers_sent or self.chunked or self.response_length is None
                or not isinstance(arg, bytes) or not self.response_length <= len(arg) <= ONE_SEND_MAX):
            return super().write(arg)
        sock, buffer = self.sock, _Buffer()
        self.sock = buffer
        try:
            super().write(arg)  # the headers, then the body (cut to Content-Length), into the buffer
        finally:
            self.sock = sock
        sock.sendall(b"".join(buffer.parts))


def install() -> None:
    """Makes OneSendResponse the HTTP/1 response of this process's gunicorn worker."""
    wsgi.Response = OneSendResponse
