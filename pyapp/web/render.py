"""Rendering: JSON bodies (Decimal as a number) and problem documents."""
from __future__ import annotations

import json
from decimal import Decimal

from bottle import response

from pyapp.web.problems import Problem

PROBLEM_MEDIA = "application/problem+json"


def _json_default(v):
    if isinstance(v, Decimal):
        return float(v)
    return str(v)


def dumps(value) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def render_problem(p: Problem, request_id: str) -> str:
    """Sets the response's status, media type and the problem's headers; returns the body."""
    response.status = p.status
    response.content_type = PROBLEM_MEDIA
    for k, v in p.headers.items():
        response.set_header(k, v)
    return dumps(p.body(request_id))
