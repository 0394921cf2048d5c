"""`pdm run` (what `make run` calls): the whole platform on a laptop, no Docker.

Brings the embedded stack up, applies migrations, creates the topics, starts every service
as a child process (the simulator is the IoT gateway), trains the missing initial models in
the background, prints where everything is and a live line of what is flowing and training;
Ctrl-C stops everything it started (the stack keeps running for `pdm` commands until
`pdm stack down`, unless `--stop-stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import typer

from pdm_common import topics
from pdm_common.settings import STATE_DIR, CommonSettings
from pdm_tools.catalog import SERVICES
from pdm_tools.stack.processes import free_port, port_is_free


def _env_from_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def _ready(ports: dict[str, int]) -> dict[str, str]:
    """Each service's /ready answer, for the status line."""
    import urllib.error
    import urllib.request

    out = {}
    for name, port in ports.items():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                out[name] = "ready"
        except urllib.error.HTTPError:
            out[name] = "NOT READY"
        except OSError:
            out[name] = "starting"
    return out


def _counts(database_url: str) -> str:
    """Readings stored and alarms open, for the status line."""
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM readings), "
                "(SELECT count(*) FROM alarms WHERE status = 'open')"
            ).fetchone()
    except psycopg.Error as exc:
        return f"database unavailable ({type(exc).__name__})"
    return f"readings stored: {row[0]}   open alarms: {row[1]}" if row else ""


def run(stop_stack: bool = False, train: bool = True) -> None:
    from pdm_tools.bootstrap import InitialTraining, demo_api_key, seed_demo_crew
    from pdm_tools.stack import stack

    typer.secho("== starting the embedded stack (broker, PostgreSQL, MLflow)", bold=True)
    stack.up(STATE_DIR)
    env = os.environ | _env_from_file(STATE_DIR / "stack.env")
    settings = CommonSettings()  # read after `up`: stack.env exists now

    typer.secho("== applying migrations", bold=True)
    subprocess.run([sys.executable, "-m", "pdm_tools.cli", "migrate"], env=env, check=True)
    typer.secho("== creating topics", bold=True)
    subprocess.run([sys.executable, "-m", "pdm_tools.cli", "topics", "ensure"], env=env, check=True)

    api_key = demo_api_key(STATE_DIR, env)
    crew = asyncio.run(seed_demo_crew(settings.kafka_bootstrap))
    typer.echo(f"   demo maintenance crew: {crew} technicians (applied by the scheduler)")

    logs = STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    ports: dict[str, int] = {}
    for service in SERVICES:
        name, port_var, default_port = service.name, service.port_env, service.default_port()
        port = int(env.get(port_var, 0)) or (
            default_port if port_is_free(default_port) else free_port()
        )
        ports[name] = port
        log = (logs / f"{name}.log").open("ab")
        child = subprocess.Popen(
            [sys.executable, "-m", service.package],
            env=env | {port_var: str(port)},
            stdout=log,
            stderr=log,
        )
        children.append((name, child))
        typer.echo(
            f"   {name:<10} pid {child.pid}  http://127.0.0.1:{port}/ready  log {logs / name}.log"
        )

    training = InitialTraining(env, settings.mlflow_tracking_uri, logs / "training.log")
    if train:
        todo = training.plan()
        for name, why in training.skipped:
            typer.secho(f"   not training {name}: {why}", fg="yellow")
        if todo:
            names = ", ".join(name for name, _ in todo)
            typer.secho(
                f"== training in the background: {names} (a few minutes; progress in the "
                f"status line, output in {training.log}); predictions for a type answer "
                "503 `no_champion` until its model is promoted",
                bold=True,
            )
            training.start()
        elif not training.skipped:
            typer.echo("   every initial model has a champion in the registry")

    api = f"http://127.0.0.1:{ports['gateway']}"
    typer.secho("\n== the platform is running", bold=True, fg="green")
    typer.secho(f"   API               {api}   (OpenAPI docs: {api}/docs)", bold=True)
    typer.secho(f"   API key (admin)   {api_key}   (also in {STATE_DIR / 'api-key'})", bold=True)
    typer.echo(
        f"   try:  curl -H 'Authorization: Bearer {api_key}' {api}/v1/assets\n"
        f"   Kafka bootstrap   {settings.kafka_bootstrap}   (publish to {topics.READINGS})\n"
        f"   PostgreSQL        {settings.database_url}\n"
        f"   MLflow            {settings.mlflow_tracking_uri}\n"
        "   simulator         pumps, motors, compressors, milling machines (PDM_SIMULATOR_*)\n"
        "   break a pump:  .venv/bin/pdm simulate inject --asset pump-001 "
        "--mode bearing_degradation --severity critical\n"
        f'   query:  psql "{settings.database_url}" -c '
        '"SELECT * FROM readings ORDER BY time DESC LIMIT 10"\n'
        "   dead letters:  .venv/bin/pdm dlq list pdm.readings.v1\n"
        "   Ctrl-C stops the services (the stack stays up: `pdm stack down`)."
    )
    asyncio.run(_watch(settings, children, ports, training.status))
    training.stop()
    stop_children(children, lambda name: typer.echo(f"   stopped {name}"))
    if stop_stack:
        stack.down(STATE_DIR)


async def _watch(
    settings: CommonSettings,
    children: list[tuple[str, subprocess.Popen[bytes]]],
    ports: dict[str, int],
    training: Callable[[], str],
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)
        dead = [name for name, c in children if c.poll() is not None]
        if dead:
            typer.secho(f"   service(s) exited: {', '.join(dead)} - see .pdm/logs/", fg="red")
            stop.set()
            break
        counts = await asyncio.to_thread(_counts, settings.database_url)
        ready = await asyncio.to_thread(_ready, ports)
        learning = training()
        typer.echo(
            f"   [{time.monotonic() - started:6.0f}s] {counts}   "
            + "  ".join(f"{name}: {state}" for name, state in ready.items())
            + (f"   {learning}" if learning else "")
        )


async def publish_json(bootstrap: str, topic: str, body: object, key: str | None) -> None:
    """One JSON message, acknowledged by the broker (for the CLI's demo commands)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, json.dumps(body).encode(), key=key.encode() if key else None
        )
    finally:
        await producer.stop()


async def publish_reading(bootstrap: str, asset_id: str, readings: dict[str, float]) -> None:
    """One snapshot on `pdm.readings.v1`, as a gateway would send it (for demos)."""
    msg = {"asset_id": asset_id, "ts": datetime.now(UTC).isoformat(), "readings": readings}
    await publish_json(bootstrap, topics.READINGS, msg, asset_id)


def stop_children(
    children: list[tuple[str, subprocess.Popen[bytes]]],
    stopped: Callable[[str], None] = lambda name: None,
) -> None:
    """SIGTERM every service at once, then wait for each (killed after 20 s)."""
    for _, child in children:
        child.send_signal(signal.SIGTERM)
    for name, child in children:
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
        stopped(name)
