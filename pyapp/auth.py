"""Password hashing (scrypt) and bearer-token helpers. The database never sees a password: it
stores the encoded scrypt hash, and at login it compares the key derived here with the stored one
(app.login_parameters gives the salt and cost, app.login compares and makes the token). The app
never sees a stored hash. Tokens are kept in the database only as their SHA-256 hex.

The cost is OWASP's guidance for scrypt, N = 2^17, r = 8, p = 1 (internal.scrypt_target in SQL
holds the same figures): 128 MiB and a few hundred milliseconds of one core per derivation. At most
SCRYPT_CONCURRENCY derivations run at once per process, so a burst of logins or sign-ups cannot
take every core and gigabytes of memory; and at most PASSWORD_WORK_SLOTS requests of a process may
be doing password work at once (deriving, waiting to derive, or serving the throttle's delay): the
next one is refused at once (Busy, a 503 with Retry-After), so a flood of logins never occupies
every request thread and stalls checkouts.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import threading

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 17, 8, 1
SCRYPT_CONCURRENCY = 2
PASSWORD_WORK_SLOTS = 4
MAX_PASSWORD = 1024
_derivations = threading.BoundedSemaphore(SCRYPT_CONCURRENCY)
_password_work = threading.BoundedSemaphore(PASSWORD_WORK_SLOTS)


class Busy(Exception):
    """Every password-work slot of this process is taken: retry shortly."""


@contextlib.contextmanager
def password_work():
    """One request's password work (its wait, its derivations), or Busy when no slot is free."""
    if not _password_work.acquire(blocking=False):
        raise Busy("too many logins and sign-ups in progress on this server")
    try:
        yield
    finally:
        _password_work.release()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _derivations:
        return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                              maxmem=256 * 1024 * 1024, dklen=32)


def hash_password(password: str, params: dict | None = None) -> str:
    """scrypt$<n>$<r>$<p>$<salt>$<key>: the parameters travel with the hash, so they can change.
    `params` ({salt, n, r, p}) are the ones app.login_parameters chose for an upgrade; by default
    a fresh salt and the target cost."""
    if params is None:
        params = {"salt": _b64(secrets.token_bytes(16)), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
    return f"scrypt${params['n']}${params['r']}${params['p']}${params['salt']}${derive_key(password, params)}"


def derive_key(password: str, params: dict) -> str:
    """The key of `password` under app.login_parameters' {salt, n, r, p}, as app.login wants it.
    ValueError when the parameters are not ones a hash of ours can have."""
    n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
    if not (2 <= n <= 2 ** 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("unusable scrypt parameters")
    return _b64(_scrypt(password, _unb64(str(params["salt"])), n, r, p))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_hash(authorization: str | None) -> str | None:
    """SHA-256 hex of the bearer token in an Authorization header, or None when there is none
    (the app functions then answer UNAUTHENTICATED)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token_hash(token)
