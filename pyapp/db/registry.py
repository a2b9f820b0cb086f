"""The error registry: every SQLSTATE the HTTP app answers, with its policy (sql/api/error_codes.sql).

One row per SQLSTATE: the problem `code`, the HTTP status, the title, whether it is retried
(`yes`: a transient conflict the app retries itself; `detail`: only when the error's DETAIL says
"retryable": true; `no`), the Retry-After seconds and a sentence for the API document. The app
loads it from the database (app.error_policy()) on a worker's first request; the API document and
the mapping of Bottle's own errors read the same rows from the SQL file, which needs no database.
Pure Python: no connection is made here.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent.parent / "sql" / "api" / "error_codes.sql"
PROJECT_CLASS = "MK"  # the SQLSTATE class of the project's own codes (see the SQL file)
RETRYABLE = ("yes", "detail", "no")
POLICY_QUERY = ("SELECT sqlstate, code, http_status, title, retryable, retry_after, description"
                " FROM app.error_policy()")


@dataclass(frozen=True)
class Code:
    """One registry entry. `sqlstate` is None for a problem the HTTP layer raises itself."""

    sqlstate: str | None
    code: str
    status: int
    title: str
    retryable: str = "no"
    retry_after: int | None = None
    description: str = ""

    def retry_after_header(self, detail: dict) -> str | None:
        """The Retry-After of an answer with this code and this DETAIL: the DETAIL's `retryAfter`
        (whatever the status), else the registry's, which a `detail` code sends only when the DETAIL
        says it is retryable."""
        after = detail.get("retryAfter")
        if isinstance(after, int) and not isinstance(after, bool):
            return str(max(1, after))
        if self.retry_after is None or (self.retryable == "detail" and detail.get("retryable") is not True):
            return None
        return str(self.retry_after)

    def retries(self, detail: dict) -> bool:
        """Whether the error is transient, so that the same call may succeed if repeated."""
        return self.retryable == "yes" or (self.retryable == "detail" and detail.get("retryable") is True)

    @property
    def conflict(self) -> bool:
        """A concurrency conflict (counted and logged as one, retried when `retries`)."""
        return self.retryable != "no"


class Registry:
    """The codes by SQLSTATE; `codes` keeps their order (the first code of a status is its default)."""

    def __init__(self, codes) -> None:
        self.codes: tuple[Code, ...] = tuple(codes)
        self.by_state: dict[str, Code] = {c.sqlstate: c for c in self.codes if c.sqlstate}

    @classmethod
    def from_rows(cls, rows) -> Registry:
        """From (sqlstate, code, http_status, title, retryable, retry_after, description) rows."""
        return cls(Code(s, c, int(h), t, r or "no", a, d or "") for s, c, h, t, r, a, d in rows)

    def get(self, sqlstate: str | None) -> Code | None:
        return self.by_state.get(sqlstate or "")

    def code_name(self, sqlstate: str | None) -> str | None:
        """The problem code of a SQLSTATE (e.g. for a command that reacts to one), or None."""
        c = self.get(sqlstate)
        return c.code if c else None

    def first_for_status(self, status: int) -> Code | None:
        return next((c for c in self.codes if c.status == status), None)


_ROW_RE = re.compile(
    r"\(\s*'(?P<state>[0-9A-Z]{5})',\s*'(?P<code>[A-Z_]+)',\s*(?P<status>\d{3}),\s*'(?P<title>(?:[^']|'')*)',"
    r"\s*'(?P<retry>[a-z]+)',\s*(?P<after>NULL|\d+)(?:::integer)?,\s*'(?P<desc>(?:[^']|'')*)'\s*\)", re.S)


def parse(sql_text: str) -> Registry:
    """The rows of api.error_policy's VALUES list, read from the SQL file's text."""
    codes = []
    for m in _ROW_RE.finditer(sql_text):
        after = None if m["after"] == "NULL" else int(m["after"])
        codes.append(Code(m["state"], m["code"], int(m["status"]), m["title"].replace("''", "'"),
                          m["retry"], after, m["desc"].replace("''", "'")))
    if not codes:
        raise ValueError("no registry rows found in the SQL text")
    return Registry(codes)


@functools.lru_cache(maxsize=1)
def shipped() -> Registry:
    """The registry this version ships (sql/api/error_codes.sql), read once per process."""
    return parse(SOURCE.read_text(encoding="utf-8"))


def detail_json(exc) -> dict:
    """A database error's DETAIL as a JSON object ({} when it is absent or not an object)."""
    diag = getattr(exc, "diag", None)
    text = diag.message_detail if diag else None
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def code_of(conn, exc) -> str | None:
    """The problem code of a database error, for a command: looked up in the database's registry
    (api.error_policy, readable by the owner), else in the shipped one. `conn` must be usable
    (autocommit, or rolled back after the error)."""
    state = getattr(exc, "sqlstate", None)
    if not state:
        return None
    try:
        row = conn.execute("SELECT code FROM api.error_policy() WHERE sqlstate = %s", (state,)).fetchone()
        if row is not None:
            return row[0]
    except Exception:  # noqa: BLE001 - a database before the policy: the shipped registry answers
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001
            pass
    return shipped().code_name(state)
