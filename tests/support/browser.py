"""Headless Chromium for the tests that render a page (the dashboard, the API docs): one run with
a throwaway profile, and a parser of the rendered DOM's figures by element id."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed: the dashboard test needs the Debian package `chromium` "
                "(scripts/setup.sh installs it; or run: apt-get install chromium)")


def run_chromium(args: list[str], timeout: float = 30) -> bytes:
    """Runs headless Chromium once with a throwaway profile; stops its whole process group."""
    profile = tempfile.mkdtemp(prefix="mk-chromium-")
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = b"", b"timed out"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call started: Chromium's helpers too
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode in (0, -signal.SIGKILL) or out, err.decode(errors="replace")[-2000:]
    return out


class Figures(HTMLParser):
    """id -> (data-value, text) of every element with an id; and the body's data-state."""

    def __init__(self):
        super().__init__()
        self.found: dict[str, list] = {}
        self.body: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if "id" in a:
            self.found[a["id"]] = [a.get("data-value"), ""]
        if tag not in ("meta", "link", "input", "br", "img"):
            self._open.append(a.get("id"))

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for i in self._open:
            if i is not None:
                self.found[i][1] += data
