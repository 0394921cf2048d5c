"""Fixtures for service-level integration tests: a fresh broker per test, a migrated and
emptied database, and a factory for real ingest service processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pdm_tools.catalog import reset_statements
from pdm_tools.stack.processes import LOOPBACK, start_broker

from .harness import ServiceProcess


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[str]:
    """A fresh tansu broker per test (~30 ms): no test sees another test's messages."""
    proc = start_broker(tmp_path, die_with_parent=True)
    yield f"{LOOPBACK}:{proc.port}"
    proc.stop()


@pytest.fixture(scope="session")
def migrated_database_url(database_url: str) -> str:
    """The session database with every migration applied through the real `pdm migrate`."""
    result = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", "migrate"],
        env=os.environ | {"PDM_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return database_url


@pytest.fixture
def db_url(migrated_database_url: str) -> str:
    """The migrated database with every service table emptied before the test."""
    with psycopg.connect(migrated_database_url) as conn:
        for sql in reset_statements():
            conn.execute(sql)
    return migrated_database_url


@pytest.fixture
def start_service(
    kafka: str, db_url: str, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start `python -m pdm_<name>` with extra PDM_* variables; all stopped after the test."""
    started: list[ServiceProcess] = []

    def start(name: str, **env: str) -> ServiceProcess:
        base = {
            "PDM_KAFKA_BOOTSTRAP": kafka,
            "PDM_DATABASE_URL": db_url,
            "PDM_KAFKA_PARTITIONS": "3",
            "PDM_RETRY_BACKOFF_MAX_S": "2",
        }
        log = tmp_path / f"{name}-{len(started)}.log"
        proc = ServiceProcess(name, base | env, log)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def start_ingest(start_service: Callable[..., ServiceProcess]) -> Callable[..., ServiceProcess]:
    return lambda **env: start_service("ingest", **env)
