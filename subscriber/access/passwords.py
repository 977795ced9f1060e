"""Slow password hashes (scrypt, from the standard library) and the random secrets we hand out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: scrypt cost: 32 MiB and about 0.1 s of one core per check; stored with each hash, so raising it
#: later keeps old hashes verifiable.
N, R, P = 2**15, 8, 1
_MAX_MEM = 64 * 2**20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, n: int = N) -> str:
    """``scrypt$n$r$p$salt$hash``, base64."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=R, p=P, maxmem=_MAX_MEM, dklen=32)
    return f"scrypt${n}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; the comparison is constant-time. A malformed hash matches nothing."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAX_MEM,
            dklen=len(expected),
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def new_password() -> str:
    """24 random characters (about 143 bits), easy to copy."""
    return secrets.token_urlsafe(18)


def new_token() -> str:
    """A bearer token: a recognisable prefix and 256 random bits."""
    return "otto_" + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored of a token or session id: SHA-256 suffices for 256 random bits (no dictionary to try)."""
    return hashlib.sha256(token.encode()).hexdigest()
