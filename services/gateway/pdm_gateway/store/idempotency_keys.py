"""`idempotency_keys` (owned by the gateway): one row per (API key, Idempotency-Key) with the
fingerprint of the first request's body and, once it was answered, that answer. What a claim
means for a request is decided in `pdm_gateway.idempotency`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple

from psycopg.types.json import Jsonb

from pdm_gateway.store.database import Store

TABLE = "idempotency_keys"
IdempotencyState = Literal["new", "replay", "mismatch", "in_flight"]


class Claim(NamedTuple):
    """The outcome of claiming a key; `status` and `response` are set for a `replay`."""

    state: IdempotencyState
    status: int | None = None
    response: Any = None


class IdempotencyStore(Store):
    async def begin(self, key_id: str, idem_key: str, request_sha256: str) -> Claim:
        """Claim `idem_key` for this request; or say why not (and the stored answer)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO idempotency_keys (key_id, idempotency_key, request_sha256) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [key_id, idem_key, request_sha256],
            )
            if cur.rowcount == 1:
                return Claim("new")
            cur = await conn.execute(
                "SELECT request_sha256, status, response FROM idempotency_keys "
                "WHERE key_id = %s AND idempotency_key = %s",
                [key_id, idem_key],
            )
            row = await cur.fetchone()
        if row is None:  # purged between the two statements: treat as new next time
            return Claim("in_flight")
        stored_sha, status, response = row
        if stored_sha != request_sha256:
            return Claim("mismatch")
        if status is None:
            return Claim("in_flight")
        return Claim("replay", status, response)

    async def finish(self, key_id: str, idem_key: str, status: int, response: Any) -> None:
        """Store the answer, so a retry with the key gets it again."""
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status = %s, response = %s "
                "WHERE key_id = %s AND idempotency_key = %s",
                [status, Jsonb(response), key_id, idem_key],
            )

    async def abandon(self, key_id: str, idem_key: str) -> None:
        """The first request failed before publishing: let a retry with the key go through."""
        async with self.db.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE key_id = %s AND idempotency_key = %s "
                "AND status IS NULL",
                [key_id, idem_key],
            )

    async def purge(self, older_than: datetime) -> int:
        """Forget keys claimed before `older_than`; the number removed."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < %s", [older_than]
            )
            return cur.rowcount
