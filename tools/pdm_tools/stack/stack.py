"""The embedded development stack: a Kafka-protocol broker, PostgreSQL and MLflow.

`up` starts what is not already running on loopback ports (reusing the previous run's ports
when they are free), waits until each server really answers, and writes the connection
settings to `<state_dir>/stack.env`, which `CommonSettings` reads as a fallback. It is
idempotent and recovers from crashes (stale pid files, dead or half-started servers).

Layout of the state dir (default `.pdm/`):
    stack.env             PDM_KAFKA_BOOTSTRAP / PDM_DATABASE_URL / PDM_MLFLOW_TRACKING_URI
    stack.json            ports of the last run (reused by the next `up`)
    run/<name>.pid|json   pid and identity of broker and MLflow
    logs/<name>.log       server logs
    postgres/             the PostgreSQL cluster (kept across `down`/`up`)
    mlflow/               MLflow's SQLite registry and artifacts (kept across `down`/`up`)

The broker is tansu built with in-memory storage only: a broker restart (or `down`) loses
all topics, messages and committed offsets. PostgreSQL and MLflow data persist.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdm_common.settings import STATE_DIR
from pdm_tools.stack.processes import (
    BROKER_NOTE,
    LOOPBACK,
    EmbeddedPostgres,
    ManagedProcess,
    ServerStartError,
    choose_port,
    http_ok,
    kafka_answers,
    log_path,
    spawn_mlflow,
    start_broker,
    tcp_answers,
    wait_for_mlflow,
)

Log = Callable[[str], None]

COMPONENTS = ("broker", "postgres", "mlflow")
ENV_KEYS = {
    "broker": "PDM_KAFKA_BOOTSTRAP",
    "postgres": "PDM_DATABASE_URL",
    "mlflow": "PDM_MLFLOW_TRACKING_URI",
}


# --------------------------------------------------------------------------------------------
# stack.env / stack.json
# --------------------------------------------------------------------------------------------


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write KEY=VALUE lines atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by `pdm stack up`; read by every service and `pdm` command as a fallback.",
        "# Real environment variables take precedence.",
        *(f"{key}={value}" for key, value in values.items()),
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (comments and blank lines ignored); {} when missing."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _load_state(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / "stack.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = state_dir / ".stack.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / "stack.json")


def _prev_port(state: Mapping[str, Any], name: str) -> int | None:
    port = state.get(name, {}).get("port")
    return int(port) if port else None


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one state dir (two terminals, or `make run` twice)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "stack.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _postgres(state_dir: Path, port: int) -> EmbeddedPostgres:
    return EmbeddedPostgres(state_dir / "postgres", port, log_file=log_path(state_dir, "postgres"))


def _line(log: Log, name: str, verb: str, pid: int | None, where: str, secs: float) -> None:
    pid_part = f"pid {pid:<8}" if pid else ""
    where_part = f"{where}  " if where else ""
    log(f"  {name:<9} {verb:<16} {pid_part:<12} {where_part}({secs:.1f}s)")


# --------------------------------------------------------------------------------------------
# up / down / status
# --------------------------------------------------------------------------------------------


def up(state_dir: Path = STATE_DIR, *, log: Log = print) -> dict[str, str]:
    """Start the stack (or adopt what already runs) and return the connection settings.

    MLflow is launched first and waited for last: it spends 6-15 s importing, which then
    overlaps with the broker and PostgreSQL start.
    """
    state_dir = Path(state_dir).absolute()
    t_all = time.monotonic()
    with _locked(state_dir):
        state = _load_state(state_dir)
        log(f"pdm stack: state in {state_dir}")
        claimed: set[int] = set()

        # MLflow: adopt a running (or still starting) server, else launch it now.
        t0 = time.monotonic()
        mlflow = ManagedProcess.from_pid_file("mlflow", state_dir)
        mlflow_verb = "started"
        if mlflow is not None and mlflow.is_ours() and mlflow.port:
            mlflow_verb = "already running"
        else:
            if mlflow is not None:
                mlflow_verb = "restarted" if mlflow.stop(timeout=10) else "recovered"
            mlflow_port = choose_port(_prev_port(state, "mlflow"))
            mlflow = spawn_mlflow(state_dir, mlflow_port)
        assert mlflow.port is not None
        claimed.add(mlflow.port)
        state["mlflow"] = {"port": mlflow.port}

        broker, broker_verb, broker_secs = _ensure_broker(state_dir, state, claimed)
        claimed.add(broker.port or 0)
        state["broker"] = {"port": broker.port}
        _save_state(state_dir, state)
        _line(log, "broker", broker_verb, broker.pid, f"{LOOPBACK}:{broker.port}", broker_secs)
        if broker_verb != "already running":
            log(f"  {'':<9} note: {BROKER_NOTE}")

        t1 = time.monotonic()
        pg, pg_verb = _ensure_postgres(state_dir, state, claimed)
        state["postgres"] = {"port": pg.port, "data_dir": str(pg.data_dir)}
        _save_state(state_dir, state)
        _line(log, "postgres", pg_verb, pg.pid(), pg.url, time.monotonic() - t1)
        if pg.data_dir != pg.requested_data_dir:
            log(
                f"  {'':<9} note: data dir is {pg.data_dir} ({pg.requested_data_dir} is not "
                "reachable by the unprivileged postgres user)"
            )

        if mlflow_verb == "already running" and not http_ok(_mlflow_url(mlflow.port) + "/health"):
            mlflow_verb = "already starting"
        try:
            wait_for_mlflow(mlflow)
        except ServerStartError:
            if mlflow_verb not in ("already running", "already starting"):
                raise
            # Adopted but never became healthy (a hung half-start): replace it once.
            mlflow.stop(timeout=10)
            mlflow = spawn_mlflow(state_dir, mlflow.port)
            mlflow_verb = "restarted"
            wait_for_mlflow(mlflow)
        _line(
            log, "mlflow", mlflow_verb, mlflow.pid, _mlflow_url(mlflow.port), time.monotonic() - t0
        )

        env = {
            ENV_KEYS["broker"]: f"{LOOPBACK}:{broker.port}",
            ENV_KEYS["postgres"]: pg.url,
            ENV_KEYS["mlflow"]: _mlflow_url(mlflow.port),
        }
        write_env_file(state_dir / "stack.env", env)
    log(
        f"stack is up ({time.monotonic() - t_all:.1f}s); settings written to "
        f"{state_dir / 'stack.env'}:"
    )
    for key, value in env.items():
        log(f"  {key}={value}")
    log(f"Logs: {state_dir / 'logs'}/  ·  `pdm stack status` to check, `pdm stack down` to stop.")
    return env


def _mlflow_url(port: int | None) -> str:
    return f"http://{LOOPBACK}:{port}"


def _ensure_broker(
    state_dir: Path, state: Mapping[str, Any], claimed: set[int]
) -> tuple[ManagedProcess, str, float]:
    t0 = time.monotonic()
    old = ManagedProcess.from_pid_file("broker", state_dir)
    verb = "started"
    if old is not None:
        if old.is_ours() and old.port:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and old.is_ours():
                if kafka_answers(LOOPBACK, old.port):
                    return old, "already running", time.monotonic() - t0
                time.sleep(0.1)
        verb = "restarted" if old.stop(timeout=5) else "recovered"
    port = choose_port(_prev_port(state, "broker"), exclude=claimed)
    return start_broker(state_dir, port), verb, time.monotonic() - t0


def _ensure_postgres(
    state_dir: Path, state: Mapping[str, Any], claimed: set[int]
) -> tuple[EmbeddedPostgres, str]:
    pg = _postgres(state_dir, _prev_port(state, "postgres") or 0)
    running_port = pg.running_port()
    verb = "started"
    if running_port:
        pg = _postgres(state_dir, running_port)
        try:
            pg.wait_ready(timeout=10)
            return pg, "already running"
        except ServerStartError:
            pg.stop(mode="immediate", timeout=10)  # half-started or wedged
            verb = "restarted"
    elif (pg.data_dir / "postmaster.pid").exists():
        verb = "recovered"
    if not pg.is_initialised():
        verb += ", initdb"
    pg = _postgres(state_dir, choose_port(_prev_port(state, "postgres"), exclude=claimed))
    pg.start()
    return pg, verb


def down(state_dir: Path = STATE_DIR, *, log: Log = print) -> None:
    """Stop every component, also ones recorded only by stale pid files.

    Data in PostgreSQL and MLflow stays on disk; the broker's topics are gone.
    """
    state_dir = Path(state_dir).absolute()
    with _locked(state_dir):
        state = _load_state(state_dir)
        log(f"pdm stack: stopping the stack in {state_dir}")
        for name in ("mlflow", "broker"):
            t0 = time.monotonic()
            proc = ManagedProcess.from_pid_file(name, state_dir)
            if proc is None:
                log(f"  {name:<9} not running")
                continue
            pid = proc.pid
            verb = "stopped" if proc.stop(timeout=10) else "not running (stale pid file removed)"
            _line(log, name, verb, pid, "", time.monotonic() - t0)
        t0 = time.monotonic()
        pg = _postgres(state_dir, _prev_port(state, "postgres") or 0)
        pg_pid = pg.pid()
        if pg_pid or pg.recorded_pid():
            pg.stop(mode="fast")
            verb = "stopped" if pg_pid else "not running (stale pid file removed)"
            _line(log, "postgres", verb, pg_pid, "", time.monotonic() - t0)
        else:
            log(f"  {'postgres':<9} not running")


@dataclass(frozen=True)
class ComponentStatus:
    """One row of `pdm stack status`."""

    name: str
    pid: int | None
    port: int | None
    alive: bool  # the recorded process exists and is the program we started
    answering: bool  # its port accepts connections right now
    url: str
    note: str = ""

    @property
    def state(self) -> str:
        if self.alive and self.answering:
            return "running"
        if self.alive:
            return "not answering"
        return "dead" if self.pid else "stopped"


def status(state_dir: Path = STATE_DIR) -> list[ComponentStatus]:
    """Each component's pid, port, liveness and URL (from pid files; quick TCP probes)."""
    state_dir = Path(state_dir).absolute()
    state = _load_state(state_dir)
    rows = []
    for name in ("broker", "mlflow"):
        proc = ManagedProcess.from_pid_file(name, state_dir)
        port = (proc.port if proc else None) or _prev_port(state, name)
        alive = bool(proc and proc.is_ours())
        url = f"{LOOPBACK}:{port}" if name == "broker" else _mlflow_url(port)
        note = BROKER_NOTE if name == "broker" else ""
        if proc is not None and not alive:
            note = f"stale pid file {proc.pid_file}; `pdm stack up` cleans it up"
        rows.append(
            ComponentStatus(
                name=name,
                pid=proc.pid if proc else None,
                port=port,
                alive=alive,
                answering=bool(alive and port and tcp_answers(LOOPBACK, port)),
                url=url if port else "",
                note=note,
            )
        )
    pg = _postgres(state_dir, _prev_port(state, "postgres") or 0)
    pid = pg.pid()
    port = pg.running_port() or (pg.port or None)
    if port:
        pg = _postgres(state_dir, port)
    note = f"data: {pg.data_dir}"
    if pid is None and pg.recorded_pid():
        note = f"stale {pg.data_dir / 'postmaster.pid'} (crashed?); `pdm stack up` recovers"
    rows.insert(
        1,
        ComponentStatus(
            name="postgres",
            pid=pid or pg.recorded_pid(),
            port=port,
            alive=pid is not None,
            answering=bool(pid and port and tcp_answers(LOOPBACK, port)),
            url=pg.url if port else "",
            note=note,
        ),
    )
    return rows


def format_status(rows: list[ComponentStatus]) -> str:
    """A plain table for the terminal."""
    header = f"{'component':<10} {'state':<14} {'pid':<8} {'port':<6} url"
    lines = [header]
    for r in rows:
        lines.append(
            f"{r.name:<10} {r.state:<14} {r.pid or '-'!s:<8} {r.port or '-'!s:<6} {r.url}"
            + (f"\n{'':<10} {r.note}" if r.note else "")
        )
    return "\n".join(lines)
