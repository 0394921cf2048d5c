"""`audit_log` (owned by the gateway): one row per write request, written by the audit
middleware after the request was answered."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from pdm_gateway.store.database import Store

TABLE = "audit_log"


class AuditStore(Store):
    async def record(
        self, key_id: str | None, method: str, path: str, status: int, detail: dict[str, Any]
    ) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO audit_log (key_id, method, path, status, detail) "
                "VALUES (%s, %s, %s, %s, %s)",
                [key_id, method, path, status, Jsonb(detail)],
            )
