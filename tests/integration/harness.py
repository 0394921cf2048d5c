"""Drive real service processes, publish like a gateway, read back.

Services run as `python -m pdm_<name>` (so `kill -9` is a real kill), against the real tansu
broker and the real embedded PostgreSQL started by the fixtures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pdm_tools.stack.processes import die_with_parent_signal, free_port

REPO = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """One service process; `kill()` is SIGKILL, `start()` starts it again."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        port_var = f"PDM_{name.upper()}_HTTP_PORT"
        self.env = os.environ | env | {port_var: str(self.port), "PDM_LOG_FORMAT": "json"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"pdm_{self.name}"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent_signal,  # no orphan consumer if pytest is killed
        )
        if wait_ready:
            self.wait_until(lambda: self.probe("/ready") == 200, 60, f"{self.name} /ready")
        return self

    def ready_json(self) -> dict[str, Any] | None:
        """`/ready`'s body (whatever its status), None while the service does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read() or b"{}"))
        except (OSError, ValueError):
            return None

    def probe(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_until(self, cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}); log:\n{self.tail()}"
                )
            if cond():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; {self.name} log:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def snapshots(
    asset_ids: Sequence[str],
    n_per_asset: int,
    *,
    sensors: int = 8,
    start: datetime | None = None,
    step_s: float = 1.0,
) -> list[dict]:
    """Deterministic snapshots: `n_per_asset` per asset, `sensors` values each."""
    start = start or datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(n_per_asset):
        ts = (start + timedelta(seconds=i * step_s)).isoformat()
        for a in asset_ids:
            out.append(
                {"asset_id": a, "ts": ts, "readings": {f"s{j}": i + j / 10 for j in range(sensors)}}
            )
    return out


async def publish(
    bootstrap: str,
    messages: Iterable[bytes | dict | list],
    topic: str = "pdm.readings.v1",
    headers: dict[str, str] | None = None,
) -> int:
    """Publish as a gateway would: JSON, keyed by asset id, acks=all."""
    raw_headers = [(k, v.encode()) for k, v in (headers or {}).items()] or None
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        futures = []
        for m in messages:
            value = m if isinstance(m, bytes) else json.dumps(m).encode()
            key = None
            if isinstance(m, dict) and "asset_id" in m:
                key = str(m["asset_id"]).encode()
            elif isinstance(m, list) and m and isinstance(m[0], dict):
                key = str(m[0].get("asset_id")).encode()
            futures.append(await producer.send(topic, value, key=key, headers=raw_headers))
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, idle_ms: int = 1500) -> list:
    """Every record of `topic` from the beginning (no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])
        out = []
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                return out
            for records in batch.values():
                out += records
    finally:
        await consumer.stop()


def count_rows(database_url: str, where: str = "TRUE", params: Sequence[object] = ()) -> int:
    with psycopg.connect(database_url, connect_timeout=3) as conn:
        return conn.execute(f"SELECT count(*) FROM readings WHERE {where}", params).fetchone()[0]  # type: ignore[index]


def wait_rows(
    database_url: str, expected: int, timeout: float, ingest: ServiceProcess | None = None
) -> int:
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        try:
            n = count_rows(database_url)
        except psycopg.OperationalError:
            n = -1
        if n >= expected:
            return n
        if ingest is not None and ingest.proc is not None and ingest.proc.poll() is not None:
            raise AssertionError(f"ingest died; log:\n{ingest.tail()}")
        time.sleep(0.25)
    raise AssertionError(
        f"{n} rows after {timeout}s, expected {expected}"
        + (f"; ingest log:\n{ingest.tail()}" if ingest else "")
    )


def make_key(db_url: str, scopes: str, *extra: str) -> str:
    """A key through the real CLI (`pdm apikey create --quiet`)."""
    result = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", "apikey", "create", "--name", f"t-{scopes}",
         "--scopes", scopes, "--quiet", *extra],
        env=os.environ | {"PDM_DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
