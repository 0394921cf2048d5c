"""The migrations of this code: the `NNNN_name.sql` files next to this module plus the
generated steps, in version order."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pdm_common.db.migrations.branch import Variant
from pdm_common.db.migrations.errors import MigrationError
from pdm_common.db.migrations.predictions_layout import (
    _predictions_layout_checksum,
    predictions_layout_statements,
    predictions_policy_statements,
)
from pdm_common.db.migrations.readings_freshness import (
    _freshness_checksum,
    freshness_policy_statements,
    freshness_statements,
)
from pdm_common.db.migrations.readings_layout import (
    _layout_checksum,
    layout_statements,
    timescale_policy_statements,
)
from pdm_common.db.migrations.rendering import _sha256
from pdm_common.db.settings import StorageSettings

#: The SQL files: this package's own directory (`pdm_common/db/migrations/`).
MIGRATIONS_DIR = Path(__file__).parent
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema version. File migrations ignore the variant; generated ones depend on it."""

    version: int
    name: str
    render: Callable[[Variant, StorageSettings], list[str]] = field(repr=False)
    checksum: Callable[[Variant], str] = field(repr=False)
    generated: bool = False
    #: Timescale policies re-applied on every run once the step is applied on that branch.
    policies: Callable[[StorageSettings], list[str]] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def _file_migration(path: Path) -> Migration:
    match = _FILE_RE.match(path.name)
    if match is None:
        raise MigrationError(f"bad migration file name {path.name!r}: expected NNNN_name.sql")
    text = path.read_text(encoding="utf-8")
    digest = _sha256(text)
    return Migration(
        version=int(match.group(1)),
        name=match.group(2),
        render=lambda _variant, _settings: [text],
        checksum=lambda _variant: digest,
    )


#: Steps whose SQL is produced by Python; their version numbers are reserved among the files.
GENERATED = (
    Migration(
        2,
        "readings_layout",
        layout_statements,
        _layout_checksum,
        generated=True,
        policies=timescale_policy_statements,
    ),
    Migration(
        6,
        "predictions_layout",
        predictions_layout_statements,
        _predictions_layout_checksum,
        generated=True,
        policies=predictions_policy_statements,
    ),
    Migration(
        12,
        "readings_freshness",
        freshness_statements,
        _freshness_checksum,
        generated=True,
        policies=freshness_policy_statements,
    ),
)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The SQL files of `directory` plus the generated steps, ordered by version."""
    found = [_file_migration(p) for p in sorted(directory.glob("*.sql"))]
    by_version: dict[int, Migration] = {}
    for m in [*found, *GENERATED]:
        if m.version in by_version:
            raise MigrationError(
                f"two migrations share version {m.version:04d}: "
                f"{by_version[m.version].label} and {m.label}"
            )
        by_version[m.version] = m
    return [by_version[v] for v in sorted(by_version)]
