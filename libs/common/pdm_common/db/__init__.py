"""Database access shared by the services: pool, bulk insert, the time-bucket query layer.

Schema changes live in `pdm_common.db.migrations` and run only through `pdm migrate`.
"""

from pdm_common.db.bulk import copy_insert_ignore
from pdm_common.db.pool import DbErrorKind, classify_db_error, create_pool, ping
from pdm_common.db.queries import (
    BucketRow,
    bucket_expression,
    latest_readings,
    readings_bucketed,
    timescale_enabled,
)
from pdm_common.db.settings import StorageSettings

__all__ = [
    "BucketRow",
    "DbErrorKind",
    "StorageSettings",
    "bucket_expression",
    "classify_db_error",
    "copy_insert_ignore",
    "create_pool",
    "latest_readings",
    "ping",
    "readings_bucketed",
    "timescale_enabled",
]
