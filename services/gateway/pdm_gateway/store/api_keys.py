"""`api_keys` (owned by the gateway): look-up for authentication, and key administration.
Only the SHA-256 of a key's secret is stored (the format and hashing are in `pdm_gateway.keys`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from pdm_gateway.keys import NewKey, Principal, new_key, secret_matches
from pdm_gateway.store.database import Store

TABLE = "api_keys"


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    name: str
    secret_sha256: str
    scopes: list[str]
    rate_limit_per_s: float | None
    revoked: bool


class KeyStore(Store):
    async def find(self, key_id: str) -> KeyRow | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT key_id, name, secret_sha256, scopes, rate_limit_per_s, "
                "revoked_at IS NOT NULL FROM api_keys WHERE key_id = %s",
                [key_id],
            )
            row = await cur.fetchone()
        return KeyRow(*row) if row else None

    async def authenticate(self, key_id: str, secret: str) -> Principal | None:
        """The caller of a live key whose secret matches; None otherwise."""
        row = await self.find(key_id)
        if row is None or row.revoked or not secret_matches(secret, row.secret_sha256):
            return None
        return Principal(row.key_id, row.name, frozenset(row.scopes), row.rate_limit_per_s)

    async def create(
        self, name: str, scopes: Sequence[str], created_by: str, rate_limit_per_s: float | None
    ) -> NewKey:
        key = new_key()
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO api_keys (key_id, name, secret_sha256, scopes, rate_limit_per_s, "
                "created_by) VALUES (%s, %s, %s, %s, %s, %s)",
                [key.key_id, name, key.secret_sha256, list(scopes), rate_limit_per_s, created_by],
            )
        return key

    async def revoke(self, key_id: str) -> bool:
        """True when the key existed and was live."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
                [key_id],
            )
            return cur.rowcount == 1

    async def all_keys(self) -> list[dict[str, Any]]:
        """Every key, oldest first, without its hash."""
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT key_id, name, scopes, rate_limit_per_s, created_by, created_at, "
                "revoked_at FROM api_keys ORDER BY created_at, key_id"
            )
            return await cur.fetchall()
