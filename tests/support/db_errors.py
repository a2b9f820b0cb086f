"""Database errors as a server raises them, for tests that need no server: a psycopg.Error with a
given SQLSTATE, primary message and JSON DETAIL."""
from __future__ import annotations

import json

import psycopg


class FakeDiag:
    def __init__(self, message: str, detail: str | None):
        self.message_primary, self.message_detail = message, detail


class DbError(psycopg.Error):
    """A psycopg error with a given SQLSTATE, message and DETAIL, as a server would raise it."""

    def __init__(self, sqlstate: str, message: str = "refused", detail: dict | str | None = None):
        self._state = sqlstate
        self._diag = FakeDiag(message, json.dumps(detail) if isinstance(detail, dict) else detail)
        super().__init__(message)

    @property
    def sqlstate(self):  # type: ignore[override]
        return self._state

    @property
    def diag(self):  # type: ignore[override]
        return self._diag
