"""Reads of `/proc` (pure, unit-tested): argv, liveness, start time, process groups and the
environment of a process, and whether a command line is the server we started."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

# Popen objects of children we spawned, kept so they are reaped (no zombies, no
# ResourceWarning when a caller drops the ManagedProcess).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def read_cmdline(pid: int) -> list[str] | None:
    """argv of a live process, or None when it does not exist (or is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None  # zombies and kernel threads have an empty cmdline
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie (a killed child not yet reaped is dead)."""
    if pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot: a second guard against pid reuse."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (children that outlived their leader)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def env_has(pid: int, key: str, value: str) -> bool:
    """`key=value` is in the environment `pid` was started with."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{key}={value}".encode() in raw.split(b"\0")


def cmdline_matches(cmdline: Sequence[str] | None, expected: Sequence[str]) -> bool:
    """Every expected token appears in `cmdline`, as a whole argument or its basename.

    Basenames let `mlflow` match `/venv/bin/mlflow` even though the kernel shows the script
    behind its interpreter (`python /venv/bin/mlflow server ...`).
    """
    if not cmdline or not expected:
        return False
    present = set(cmdline) | {Path(arg).name for arg in cmdline}
    return all(token in present for token in expected)
