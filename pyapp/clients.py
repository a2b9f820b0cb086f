"""Who the client is, for the per-client limits (sign-up, login throttle).

The client is the socket peer (REMOTE_ADDR), except when that peer is one of TRUSTED_PROXIES: then
it is the nearest X-Forwarded-For hop that is not itself a trusted proxy, i.e. the address the
outermost trusted proxy saw. Hops further left were written by the client and prove nothing. With
no trusted proxy configured (the default), X-Forwarded-For is ignored, so nobody can pick their
own address. The database groups IPv6 clients by /64 (internal.client_key).
"""
from __future__ import annotations

import ipaddress

from pyapp import config


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(environ: dict) -> str:
    peer = environ.get("REMOTE_ADDR") or ""
    trusted = config.get().trusted_proxies
    if not trusted:
        return peer

    def is_trusted(addr) -> bool:
        return addr is not None and any(addr in net for net in trusted)

    if not is_trusted(_address(peer)):
        return peer
    hops = [h.strip() for h in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        addr = _address(hop)
        if addr is None:
            return peer  # a malformed hop from a trusted proxy: fall back to the proxy itself
        if not is_trusted(addr):
            return str(addr)
    return peer
