"""Idle-cost benchmark: CPU the whole platform burns while nothing but the simulated fleet
happens (issue goal: at most 15 % of one core in total, broker included).

Starts the platform the way `make run` does, but in a temp state dir so a developer's `.pdm/`
stack is left alone: the embedded stack (`pdm_tools.stack.up`: tansu broker, PostgreSQL,
MLflow), migrations, topics, the demo crew, then every service of the catalogue as its own
`python -m pdm_<name>` (the simulator with its default fleet of nine machines at 1 Hz).
It waits until every `/ready` answers 200, lets the platform settle, then measures the CPU
time (user + system, children included) of each process tree over `--seconds`: the broker,
PostgreSQL (postmaster and every backend), MLflow (server and its uvicorn worker) and each
service. Everything is stopped and removed afterwards.

Initial training is skipped by default (it is not idle); `--train` runs it first and
measures with every champion loaded.

    .venv/bin/python bench/idle.py                  # 60 s after a 30 s settle
    .venv/bin/python bench/idle.py --seconds 120 --settle 60 --train

Results go to bench/results/idle-<time>.json; the last line printed is the result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil

import benchkit

GOAL_PCT = 15.0


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its live descendants, each with its reaped children's
    time, so backends that exit during the window still count (via their parent)."""
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def platform(state: Path, train: bool) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    """The platform as `make run` starts it; yields (root pid per measured process, service
    HTTP ports)."""
    from pdm_tools.bootstrap import InitialTraining, seed_demo_crew
    from pdm_tools.catalog import SERVICES
    from pdm_tools.devrun import stop_children
    from pdm_tools.stack import stack
    from pdm_tools.stack.processes import free_port

    stack_env = stack.up(state, log=lambda line: None)
    env = dict(os.environ) | stack_env
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for step in ("migrate", "topics ensure"):
            subprocess.run(
                [sys.executable, "-m", "pdm_tools.cli", *step.split()],
                env=env,
                check=True,
                capture_output=True,
            )
        asyncio.run(seed_demo_crew(stack_env["PDM_KAFKA_BOOTSTRAP"]))
        if train:
            training = InitialTraining(
                env, stack_env["PDM_MLFLOW_TRACKING_URI"], state / "training.log"
            )
            todo = training.plan()
            print(f"training first: {', '.join(name for name, _ in todo) or 'nothing'}")
            training.start()
        ports: dict[str, int] = {}
        for service in SERVICES:
            port = ports[service.name] = free_port()
            log = (state / f"{service.name}.log").open("wb")
            child = subprocess.Popen(
                [sys.executable, "-m", service.package],
                env=env | {service.port_env: str(port)},
                stdout=log,
                stderr=log,
                cwd=benchkit.REPO,
            )
            children.append((service.name, child))
        if train:
            while len(training.done) + len(training.failed) < len(training.todo):
                time.sleep(2)
            print(f"trained: {training.status()}")
        roots = {row.name: row.pid for row in stack.status(state) if row.pid}
        assert set(roots) == {"broker", "postgres", "mlflow"}, roots
        yield roots | {name: child.pid for name, child in children}, ports
    finally:
        stop_children(children)
        stack.down(state, log=lambda line: None)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    ap.add_argument("--settle", type=float, default=30.0, help="wait after all are ready")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--train", action="store_true", help="train the initial models first")
    args = ap.parse_args()

    state = Path(tempfile.mkdtemp(prefix="pdm-bench-idle-"))
    state.chmod(0o755)  # the unprivileged PostgreSQL user must reach it
    try:
        t0 = time.monotonic()
        with platform(state, args.train) as (roots, ports):
            deadline = time.monotonic() + args.ready_timeout
            while not all(ready(port) for port in ports.values()):
                if time.monotonic() > deadline:
                    late = [name for name, port in ports.items() if not ready(port)]
                    raise SystemExit(f"not ready: {', '.join(late)}; logs in {state}")
                time.sleep(1)
            up_s = time.monotonic() - t0
            print(f"all ready after {up_s:.0f}s; settling {args.settle:.0f}s", flush=True)
            time.sleep(args.settle)
            print(f"measuring {args.seconds:.0f}s ...", flush=True)
            before = {name: tree_cpu(pid) for name, pid in roots.items()}
            started = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - started
            after = {name: tree_cpu(pid) for name, pid in roots.items()}
            still_ready = {name: ready(port) for name, port in ports.items()}
    finally:
        shutil.rmtree(state, ignore_errors=True)

    pct = {name: round(100 * (after[name] - before[name]) / wall, 1) for name in roots}
    total = round(sum(pct.values()), 1)
    result: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": benchkit.machine(),
        "command": "python bench/idle.py " + " ".join(sys.argv[1:]),
        "window_s": round(wall, 1),
        "up_s": round(up_s),
        "trained": args.train,
        "cpu_pct_of_one_core": pct,
        "total_pct": total,
        "goal_pct": GOAL_PCT,
        "meets_goal": total <= GOAL_PCT,
        "ready_after": still_ready,
    }
    print(f"\n{'process':<12} {'% of one core':>14}")
    for name, share in sorted(pct.items(), key=lambda item: -item[1]):
        print(f"{name:<12} {share:>14.1f}")
    verdict = "meets" if total <= GOAL_PCT else "MISSES"
    print(f"{'total':<12} {total:>14.1f}   goal <= {GOAL_PCT:.0f} %: {verdict}")
    benchkit.save("idle", result, as_baseline=False)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
