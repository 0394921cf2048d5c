"""API keys: the format, hashing and scope rules (pure; storage is in `store/api_keys.py`).

A key reads `pdm_<key_id>_<secret>`: `key_id` (12 hex characters) is the public half that
finds the row and names the key in logs; `secret` is 256 random bits of which only the
SHA-256 is stored. A fast hash is right here: a 256-bit random secret cannot be guessed, so
a slow password hash would only cost every request time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
#: What each scope also grants: `admin` can do everything, `write` can read.
IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
_KEY = re.compile(r"^pdm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret_sha256: str
    token: str  # shown once, never stored


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key that is valid now."""

    key_id: str
    name: str
    scopes: frozenset[str]
    rate_limit_per_s: float | None = None

    def allows(self, scope: str) -> bool:
        return any(scope in IMPLIED[s] for s in self.scopes if s in IMPLIED)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, hash_secret(secret), f"pdm_{key_id}_{secret}")


def parse_token(token: str) -> tuple[str, str] | None:
    """`(key_id, secret)` of a well-formed key, else None."""
    match = _KEY.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def check_scopes(scopes: list[str]) -> list[str]:
    """Validated, de-duplicated scopes in canonical order; ValueError names the bad ones."""
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {list(SCOPES)}; got {scopes}")
    return [s for s in SCOPES if s in scopes]


def token_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    if x_api_key:
        return x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
    return None
