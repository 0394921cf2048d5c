"""Start, watch and stop the embedded servers (tansu broker, PostgreSQL, MLflow).

Used by `pdm stack` and by the pytest fixtures, so everything here takes an explicit state
directory and never assumes `.pdm/`. Linux only: liveness and identity checks read `/proc`.

Safety rule: a pid read from a file is only ever signalled after `/proc/<pid>/cmdline` proves
it is the program we started (pids are recycled after a crash or a reboot).

The parts: `ports` (loopback ports), `procfs` (reads of `/proc`), `logs` and `errors` (server
logs and the start errors that quote them), `managed` (`ManagedProcess`: a server we spawned,
tracked by pid files), `readiness` (probes a start waits on), then one module per server:
`broker`, `mlflow_server` and `postgres`. Everything public is importable from here.
"""

from pdm_tools.stack.processes.broker import BROKER_NOTE, broker_argv, start_broker
from pdm_tools.stack.processes.errors import ServerStartError
from pdm_tools.stack.processes.logs import log_path, log_tail
from pdm_tools.stack.processes.managed import TAG_VAR, ManagedProcess, die_with_parent_signal
from pdm_tools.stack.processes.mlflow_server import (
    mlflow_argv,
    mlflow_env,
    spawn_mlflow,
    start_mlflow,
    wait_for_mlflow,
)
from pdm_tools.stack.processes.ports import LOOPBACK, choose_port, free_port, port_is_free
from pdm_tools.stack.processes.postgres import (
    PG_DATABASE,
    PG_OS_USER,
    PG_USER,
    EmbeddedPostgres,
    traversable_by,
)
from pdm_tools.stack.processes.procfs import (
    cmdline_matches,
    env_has,
    group_members,
    pid_alive,
    read_cmdline,
    start_ticks,
)
from pdm_tools.stack.processes.readiness import (
    http_ok,
    kafka_answers,
    kafka_metadata,
    tcp_answers,
    wait_for_tcp,
)

__all__ = [
    "BROKER_NOTE",
    "LOOPBACK",
    "PG_DATABASE",
    "PG_OS_USER",
    "PG_USER",
    "TAG_VAR",
    "EmbeddedPostgres",
    "ManagedProcess",
    "ServerStartError",
    "broker_argv",
    "choose_port",
    "cmdline_matches",
    "die_with_parent_signal",
    "env_has",
    "free_port",
    "group_members",
    "http_ok",
    "kafka_answers",
    "kafka_metadata",
    "log_path",
    "log_tail",
    "mlflow_argv",
    "mlflow_env",
    "pid_alive",
    "port_is_free",
    "read_cmdline",
    "spawn_mlflow",
    "start_broker",
    "start_mlflow",
    "start_ticks",
    "tcp_answers",
    "traversable_by",
    "wait_for_mlflow",
    "wait_for_tcp",
]
