"""Where the repository and the public data sets are, for the tools' defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: <repo>/tools/pdm_tools/paths.py
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The default data directory of a plain clone: `data/` in the checkout (ignored by git).
CHECKOUT_DATA_DIR = REPO_ROOT / "data"
#: A copy shared by several checkouts of one machine (`shared/data` beside the checkout),
#: used only while the checkout has no `data/` of its own.
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """`PDM_DATA_DIR` if set; else `data/` in the checkout, unless only the shared copy
    beside it exists (machines that keep one copy for several checkouts keep working).
    The checkout's folder is the answer when neither exists, so messages about a missing
    file name the place a new user should put it."""
    explicit = environ.get("PDM_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if not CHECKOUT_DATA_DIR.exists() and SHARED_DATA_DIR.is_dir():
        return SHARED_DATA_DIR
    return CHECKOUT_DATA_DIR


#: The public data sets (AI4I 2020, C-MAPSS, NAB; `pdm data check` lists the files).
DATA_DIR = data_dir()
