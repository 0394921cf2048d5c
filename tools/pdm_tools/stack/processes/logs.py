"""Where a managed server logs (`logs/<name>.log` under the state dir), and its last lines."""

from __future__ import annotations

import os
from pathlib import Path


def log_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "logs" / f"{name}.log"


def log_tail(path: Path, lines: int = 20) -> str:
    """Last lines of a log file, for error messages ('' when there is none yet)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16_384))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
