"""The public data sets some tests read, and what happens when one is missing.

On a developer machine a missing data set skips the test; under CI (`CI` set) it fails, so a
clean clone without the data cannot pass without testing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pdm_tools.paths import DATA_DIR

__all__ = ["DATA_DIR", "require"]


def require(path: Path) -> Path:
    """`path` if it exists; otherwise skip (developer machine) or fail (CI)."""
    if not path.exists():
        message = f"public data set not found: {path} (set PDM_DATA_DIR to where it is)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
