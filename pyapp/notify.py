"""Notifications: one POST of {"text": ...} (a Slack-compatible incoming webhook) to
NOTIFY_WEBHOOK_URL, with a short timeout.

`python -m pyapp notify TEXT` sends one and says what happened: exit 0 sent, or nothing to send
because the variable is unset; 1 the webhook failed (a warning says why). deploy, rollback and
alerts call send() too, and carry on whatever it returns: a notification never fails another
command. The webhook's address is a secret in Slack's scheme (whoever has it may post), so it is
never printed; a warning names its host only.
"""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from psycopg.conninfo import conninfo_to_dict

from pyapp import config

TIMEOUT_S = 5.0
MAX_TEXT = 3000  # Slack shows up to 40,000 characters; a deploy's message is a few lines
SENT, UNSET, FAILED = "sent", "unset", "failed"


def send(text: str, url: str | None = None, timeout: float = TIMEOUT_S) -> str:
    """Posts {"text": text} to `url` (default NOTIFY_WEBHOOK_URL). Returns SENT, UNSET (no URL:
    nothing sent) or FAILED (after printing a warning to stderr). Never raises."""
    url = config.notify_webhook_url() if url is None else url.strip()
    if not url:
        return UNSET
    host = "?"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("NOTIFY_WEBHOOK_URL is not an http(s) URL")
        body = json.dumps({"text": text[:MAX_TEXT]}).encode()
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read(4096)
        return SENT
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = str(exc.reason)
    except Exception as exc:  # noqa: BLE001 - a notification must never stop the command that sends it
        reason = str(exc) or type(exc).__name__
    print(f"pyapp: WARNING: notification not sent (webhook at {host}): {reason}", file=sys.stderr, flush=True)
    return FAILED


def where(url: str) -> str:
    """`dbname on host:port` of a connection string, without user or password, for messages."""
    try:
        info = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - only a label
        return "the database"
    host = info.get("host") or "localhost"
    return f"{info.get('dbname') or '?'} on {host}" + (f":{info['port']}" if info.get("port") else "")


def notify(args) -> int:
    """`python -m pyapp notify TEXT`."""
    text = " ".join(args.text).strip()
    if not text:
        print("pyapp: nothing to send: TEXT is empty", file=sys.stderr)
        return 2
    outcome = send(text)
    if outcome == UNSET:
        print("notify: NOTIFY_WEBHOOK_URL is unset; nothing was sent")
        return 0
    if outcome == FAILED:
        return 1
    print("notify: sent")
    return 0
