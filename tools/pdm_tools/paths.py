"""Where the repository and the public data sets are, for the tools' defaults."""

from __future__ import annotations

import os
from pathlib import Path

#: <repo>/tools/pdm_tools/paths.py
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The public data sets (AI4I 2020, C-MAPSS, NAB); by default `shared/data` beside the checkout.
DATA_DIR = Path(os.environ.get("PDM_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
