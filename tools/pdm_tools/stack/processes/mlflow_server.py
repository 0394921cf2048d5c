"""The MLflow tracking server and model registry (SQLite store, local artifacts)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pdm_tools.stack.processes.errors import ServerStartError
from pdm_tools.stack.processes.managed import ManagedProcess
from pdm_tools.stack.processes.ports import LOOPBACK, free_port
from pdm_tools.stack.processes.readiness import _wait_until, http_ok


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
