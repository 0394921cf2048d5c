"""A server we spawned in its own session, tracked by pid files (the broker and MLflow)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pdm_tools.stack.processes.logs import log_path, log_tail
from pdm_tools.stack.processes.procfs import (
    _CHILDREN,
    cmdline_matches,
    env_has,
    group_members,
    pid_alive,
    read_cmdline,
    start_ticks,
)

log = logging.getLogger("pdm_tools.stack")

#: Environment variable whose random value marks every process of one managed server tree.
TAG_VAR = "PDM_STACK_TAG"


def die_with_parent_signal() -> None:  # pragma: no cover - runs in the forked child
    """prctl(PR_SET_PDEATHSIG, SIGKILL): test servers die when pytest is killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class ManagedProcess:
    """A server we started in its own session, tracked by a pid file.

    Files (all under `state_dir`): `run/<name>.pid` (just the pid, for shell tools),
    `run/<name>.json` (pid, port, argv, identity tokens, start time) and `logs/<name>.log`.
    The process leads its own process group, so `stop()` also reaches its children (MLflow
    runs uvicorn in a child) and a crash of the leader cannot leave a worker holding the port.
    """

    def __init__(
        self,
        name: str,
        pid: int,
        state_dir: Path,
        *,
        port: int | None = None,
        match: Sequence[str] = (),
        ticks: int | None = None,
        tag: str | None = None,
    ) -> None:
        self.name = name
        self.pid = pid
        self.state_dir = Path(state_dir)
        self.port = port
        self.match = tuple(match)
        self.ticks = ticks
        self.tag = tag

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, port={self.port})"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def meta_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.json"

    @property
    def log_file(self) -> Path:
        return log_path(self.state_dir, self.name)

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        state_dir: Path,
        *,
        port: int | None = None,
        match: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> ManagedProcess:
        """Start `argv` detached (new session), logging to `logs/<name>.log`.

        `match` are the cmdline tokens that identify this server later (see
        `cmdline_matches`); by default the program name and every argument. A random
        `PDM_STACK_TAG` in its environment, inherited by its children, identifies the whole
        process tree. `die_with_parent` is for tests: the kernel kills the server if the
        caller dies.
        """
        state_dir = Path(state_dir)
        tag = f"{name}-{uuid.uuid4().hex}"
        child_env = dict(os.environ if env is None else env)
        child_env[TAG_VAR] = tag
        (state_dir / "run").mkdir(parents=True, exist_ok=True)
        logfile = log_path(state_dir, name)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with logfile.open("ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} starting: {shlex.join(argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=cwd or state_dir,
                start_new_session=True,
                preexec_fn=die_with_parent_signal if die_with_parent else None,
            )
        _CHILDREN[popen.pid] = popen
        # Popen returns once exec has begun, but the kernel fills in /proc/<pid>/cmdline a
        # moment later; identity checks made in that window would see an empty cmdline.
        deadline = time.monotonic() + 2.0
        while read_cmdline(popen.pid) is None and popen.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        proc = cls(
            name,
            popen.pid,
            state_dir,
            port=port,
            match=tuple(match) or (Path(argv[0]).name, *argv[1:]),
            ticks=start_ticks(popen.pid),
            tag=tag,
        )
        proc._write_files(argv)
        return proc

    def _write_files(self, argv: Sequence[str]) -> None:
        self.pid_file.write_text(f"{self.pid}\n")
        meta = {
            "name": self.name,
            "pid": self.pid,
            "port": self.port,
            "argv": list(argv),
            "match": list(self.match),
            "start_ticks": self.ticks,
            "tag": self.tag,
            "started_at": time.strftime("%FT%T%z"),
        }
        self.meta_file.write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pid_file(cls, name: str, state_dir: Path) -> ManagedProcess | None:
        """The process a previous run recorded, alive or not; None when nothing is recorded.

        Without the `.json` identity file the pid cannot be verified, so the returned
        object has no match tokens and `is_alive()`/`stop()` will never signal it.
        """
        state_dir = Path(state_dir)
        pid_file = state_dir / "run" / f"{name}.pid"
        meta_file = state_dir / "run" / f"{name}.json"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        meta: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            meta = json.loads(meta_file.read_text())
        if meta.get("pid") not in (None, pid):
            meta = {}  # the two files disagree: trust neither for identity
        return cls(
            name,
            pid,
            state_dir,
            port=meta.get("port"),
            match=meta.get("match") or (),
            ticks=meta.get("start_ticks"),
            tag=meta.get("tag"),
        )

    def is_ours(self) -> bool:
        """The recorded pid is alive AND is still the program we started (not a reused pid)."""
        child = _CHILDREN.get(self.pid)
        if child is not None and child.poll() is None:
            return True  # our own unreaped child: its pid cannot have been reused
        if not self.match or not pid_alive(self.pid):
            return False
        if self.ticks is not None and start_ticks(self.pid) != self.ticks:
            return False
        return cmdline_matches(read_cmdline(self.pid), self.match)

    is_alive = is_ours

    def orphans(self) -> list[int]:
        """Children left in our process group after the leader died (e.g. MLflow's uvicorn).

        Only members carrying our `PDM_STACK_TAG`: after a long-ago crash the group id may
        belong to an unrelated program whose leader reused the pid and died in turn.
        """
        if not self.tag or pid_alive(self.pid):
            return []
        return [p for p in group_members(self.pid) if env_has(p, TAG_VAR, self.tag)]

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM the process group, SIGKILL after `timeout`; remove the pid files.

        Returns True when something of ours was running. A pid that now belongs to another
        program is left alone (only its stale pid file goes).
        """
        targets_group = self.is_ours() or bool(self.orphans())
        if targets_group:
            self._signal_group(signal.SIGTERM)
            if not self._wait_gone(timeout):
                log.warning(
                    "%s (pid %d) ignored SIGTERM for %.0fs: SIGKILL", self.name, self.pid, timeout
                )
                self._signal_group(signal.SIGKILL)
                self._wait_gone(5.0)
        elif pid_alive(self.pid) and self.match:
            log.warning(
                "%s: pid %d from %s now belongs to another program (%s); not touching it",
                self.name,
                self.pid,
                self.pid_file,
                " ".join(read_cmdline(self.pid) or [])[:120],
            )
        self.forget()
        return targets_group

    def forget(self) -> None:
        """Remove the pid files (after a stop, or when they are stale)."""
        self.pid_file.unlink(missing_ok=True)
        self.meta_file.unlink(missing_ok=True)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(self.pid) and not group_members(self.pid):
                return True
            time.sleep(0.05)
        return False

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_file, lines)
