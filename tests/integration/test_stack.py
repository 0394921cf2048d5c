"""The embedded stack against the real servers: they answer, survive crashes, stop cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pdm_common.settings import CommonSettings
from pdm_tools.stack import stack
from pdm_tools.stack.processes import (
    EmbeddedPostgres,
    ManagedProcess,
    free_port,
    group_members,
    pid_alive,
)

pytestmark = pytest.mark.integration


async def test_kafka_produce_consume_round_trip(kafka_bootstrap: str) -> None:
    topic = f"test.stack.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"n": 1}', key=b"pump-001", headers=[("h", b"v")])
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = (await consumer.getmany(tp, timeout_ms=5000)).get(tp, [])
    finally:
        await consumer.stop()
    assert [(r.key, r.value, list(r.headers)) for r in records] == [
        (b"pump-001", b'{"n": 1}', [("h", b"v")])
    ]


def test_postgres_answers_with_durable_settings(database_url: str) -> None:
    with psycopg.connect(database_url, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database()").fetchone() == ("pdm",)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW max_connections").fetchone() == ("200",)


def test_postgres_stop_start_same_port_keeps_data(postgres: EmbeddedPostgres) -> None:
    port = postgres.port
    with psycopg.connect(postgres.url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS stack_probe (v int)")
        conn.execute("INSERT INTO stack_probe VALUES (1)")

    postgres.stop()
    assert not postgres.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.url, connect_timeout=2)
    postgres.start()
    assert postgres.port == port and postgres.running_port() == port

    with psycopg.connect(postgres.url) as conn:
        conn.execute("INSERT INTO stack_probe VALUES (2)")
    postgres.stop(mode="immediate")  # crash-like: committed rows must survive WAL replay
    postgres.start()
    with psycopg.connect(postgres.url) as conn:
        rows = conn.execute("SELECT v FROM stack_probe ORDER BY v").fetchall()
        conn.execute("DROP TABLE stack_probe")
    assert rows == [(1,), (2,)]


def test_mlflow_answers_health_and_registry(mlflow_uri: str) -> None:
    assert httpx.get(f"{mlflow_uri}/health", timeout=5).status_code == 200
    resp = httpx.post(
        f"{mlflow_uri}/api/2.0/mlflow/registered-models/create",
        json={"name": f"probe-{uuid.uuid4().hex[:8]}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback only exists for root")
def test_postgres_data_dir_unreachable_by_postgres_user_falls_back() -> None:
    private = Path(tempfile.mkdtemp(prefix="pdm-test-private-"))  # 0700: nobody cannot enter
    pg = EmbeddedPostgres(private / "pg", free_port(), log_file=private / "pg.log")
    try:
        assert pg.data_dir != pg.requested_data_dir
        pg.start()
        with psycopg.connect(pg.url, connect_timeout=3) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.destroy()
        shutil.rmtree(private, ignore_errors=True)
    assert not pg.data_dir.parent.exists()


def _pids_of_stack(state_dir: Path) -> set[int]:
    """Every process of a stack: recorded leaders, their groups, postgres and its backends."""
    pids: set[int] = set()
    for name in ("broker", "mlflow"):
        proc = ManagedProcess.from_pid_file(name, state_dir)
        if proc is not None:
            pids |= {proc.pid, *group_members(proc.pid)}
    pg = EmbeddedPostgres(state_dir / "postgres", 0)
    pids |= set(pg.server_pids())
    return {p for p in pids if pid_alive(p)}


def test_stack_up_twice_crash_recovery_and_down(
    stack_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    env = stack.up(stack_state_dir, log=lines.append)
    assert set(env) == {"PDM_KAFKA_BOOTSTRAP", "PDM_DATABASE_URL", "PDM_MLFLOW_TRACKING_URI"}
    assert stack.read_env_file(stack_state_dir / "stack.env") == env
    for key in env:
        monkeypatch.delenv(key, raising=False)
    settings = CommonSettings(_env_file=stack_state_dir / "stack.env")  # type: ignore[call-arg]
    assert settings.kafka_bootstrap == env["PDM_KAFKA_BOOTSTRAP"]
    assert settings.database_url == env["PDM_DATABASE_URL"]
    assert settings.mlflow_tracking_uri == env["PDM_MLFLOW_TRACKING_URI"]
    first = {r.name: r for r in stack.status(stack_state_dir)}
    assert [r.state for r in first.values()] == ["running"] * 3, first

    # Twice: a no-op that reports the running stack.
    lines.clear()
    t0 = time.monotonic()
    assert stack.up(stack_state_dir, log=lines.append) == env
    assert time.monotonic() - t0 < 5
    assert sum("already running" in line for line in lines) == 3, lines
    assert {r.name: r.pid for r in stack.status(stack_state_dir)} == {
        n: r.pid for n, r in first.items()
    }

    # A committed row, then SIGKILL the broker and the postmaster: stale pid files, a
    # zombie postmaster, lock files naming it.
    with psycopg.connect(env["PDM_DATABASE_URL"]) as conn:
        conn.execute("CREATE TABLE survivor (v int)")
        conn.execute("INSERT INTO survivor VALUES (42)")
    os.kill(first["broker"].pid or 0, signal.SIGKILL)
    os.kill(first["postgres"].pid or 0, signal.SIGKILL)
    expected = {"broker": "dead", "postgres": "dead", "mlflow": "running"}
    deadline = time.monotonic() + 5  # SIGKILL is asynchronous
    while (dead := {r.name: r.state for r in stack.status(stack_state_dir)}) != expected:
        assert time.monotonic() < deadline, dead
        time.sleep(0.05)

    lines.clear()
    assert stack.up(stack_state_dir, log=lines.append) == env, lines  # same ports again
    after = {r.name: r for r in stack.status(stack_state_dir)}
    assert [r.state for r in after.values()] == ["running"] * 3, after
    assert after["broker"].pid != first["broker"].pid
    assert after["postgres"].pid != first["postgres"].pid
    assert after["mlflow"].pid == first["mlflow"].pid
    with psycopg.connect(env["PDM_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT v FROM survivor").fetchall() == [(42,)]

    # Down leaves no process (MLflow's uvicorn child and postgres backends included).
    running = _pids_of_stack(stack_state_dir)
    assert len(running) >= 4
    stack.down(stack_state_dir, log=lines.append)
    assert not [p for p in running if pid_alive(p)]
    assert [r.state for r in stack.status(stack_state_dir)] == ["stopped"] * 3
    assert not list((stack_state_dir / "run").glob("*.pid"))
    stack.down(stack_state_dir, log=lines.append)  # again: harmless
