"""Database access of the gateway, one module per table: its own tables (`api_keys`,
`audit_log`, `idempotency_keys`) and the read side (CQRS) over the tables other services own:
`assets`, `readings`, `alarms`, `predictions`. The gateway never writes another service's
table; asset and alarm changes are Kafka commands to their owners.

`Stores` is what the app wires: every store over one shared `Database` (pool handle).
"""

from __future__ import annotations

from dataclasses import dataclass

from pdm_common.db.pool import tables_exist
from pdm_gateway.store import (
    alarms,
    api_keys,
    assets,
    audit_log,
    idempotency_keys,
    predictions,
    readings,
)
from pdm_gateway.store.alarms import AlarmReader
from pdm_gateway.store.api_keys import KeyStore
from pdm_gateway.store.assets import AssetReader
from pdm_gateway.store.audit_log import AuditStore
from pdm_gateway.store.database import Database
from pdm_gateway.store.idempotency_keys import IdempotencyStore
from pdm_gateway.store.predictions import PredictionReader
from pdm_gateway.store.readings import ReadingReader

#: Every table the gateway uses: its own, then the ones it reads. Ready means all exist.
TABLES = tuple(
    m.TABLE for m in (api_keys, audit_log, idempotency_keys, assets, readings, alarms, predictions)
)


@dataclass(frozen=True, slots=True)
class Stores:
    db: Database
    keys: KeyStore
    audit: AuditStore
    idempotency: IdempotencyStore
    assets: AssetReader
    readings: ReadingReader
    alarms: AlarmReader
    predictions: PredictionReader

    @classmethod
    def over(cls, db: Database) -> Stores:
        return cls(
            db,
            KeyStore(db),
            AuditStore(db),
            IdempotencyStore(db),
            AssetReader(db),
            ReadingReader(db),
            AlarmReader(db),
            PredictionReader(db),
        )

    async def schema_ready(self) -> bool:
        """PostgreSQL answers and every table the gateway uses exists (migrated)."""
        if self.db.watch is not None and self.db.watch.down is not None:
            return False
        return await tables_exist(self.db.pool, TABLES, within_s=0.5)
