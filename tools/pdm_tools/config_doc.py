"""The configuration reference, generated from the settings classes (`pdm config`).

The README's configuration table is this output; a test fails when a variable is missing
from it, so documentation cannot drift from code.
"""

from __future__ import annotations

import importlib
import json

from pydantic_settings import BaseSettings

from pdm_tools.catalog import SERVICES

#: Every settings class, by import path: the kernel's, then each service's (from the catalog).
SETTINGS_CLASSES = (
    "pdm_common.settings:CommonSettings",
    "pdm_common.db.settings:StorageSettings",
    *(service.settings_path for service in SERVICES),
)


#: Variables read outside the settings classes.
EXTRA_ROWS = (
    ("PDM_STATE_DIR", ".pdm", "Where `pdm stack` keeps server state, logs and `stack.env`."),
    (
        "PDM_DATA_DIR",
        "data",
        "Where the public data sets are (`ai4i2020/`, `cmapss/`, `nab/`; `pdm data check` "
        "verifies them): `data/` in the checkout (ignored by git), or `shared/data` beside "
        "the checkout while the checkout has no `data/` and that folder exists.",
    ),
)


def _load(path: str) -> type[BaseSettings]:
    module, name = path.split(":")
    cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
    return cls


def rows() -> list[tuple[str, str, str]]:
    """(ENV_VAR, default, description) for every setting."""
    out = list(EXTRA_ROWS)
    for path in SETTINGS_CLASSES:
        cls = _load(path)
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, dict | list):
                shown = json.dumps(default, separators=(",", ":"))
            else:
                shown = "" if default is None else str(default)
            out.append(((prefix + name).upper(), shown, field.description or ""))
    return out


def markdown() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{var}` | `{default}` | {desc} |" for var, default, desc in rows()]
    return "\n".join(lines)
