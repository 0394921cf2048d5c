"""Fixtures that run the real embedded servers (tansu, PostgreSQL, MLflow) for the tests.

Every server runs on a free loopback port with its state in a per-session directory
`<tmp>/pdm-test-stack-*` (world-traversable so the unprivileged PostgreSQL user can reach
it when tests run as root); fixtures stop the servers and delete the directory at the end,
whether tests passed or failed. Servers are started only when a test asks for them:

    kafka_bootstrap  "127.0.0.1:PORT" of a tansu broker (in-memory; topics live per session)
    postgres         the EmbeddedPostgres; tests may `.stop()` / `.start()` it (same port,
                     same data), and it is restarted after a test that left it stopped
    database_url     postgres.url (database `pdm`, superuser `pdm`, trust auth), or
                     PDM_TEST_DATABASE_URL when set (see below)
    mlflow_uri       "http://127.0.0.1:PORT" of an MLflow server (~10 s to start)
    pdm_env          sets PDM_KAFKA_BOOTSTRAP / PDM_DATABASE_URL for code that reads settings
    stack_state_dir  an empty state dir for `pdm_tools.stack.stack.up/down` (stopped after)

If pytest itself is killed (-9), the broker and the MLflow launcher die with it
(PR_SET_PDEATHSIG); what survives (PostgreSQL, MLflow's uvicorn child) is stopped by the next
session that starts a server, which reaps the directories of dead sessions. Directories of
live sessions (another engineer's run) are never touched.

PDM_TEST_DATABASE_URL=postgresql://user:pw@host:port/db runs the database tests against that
server instead (e.g. one with TimescaleDB, which no package here provides): a throwaway
database the tests migrate and empty, owned by a role that may CREATE DATABASE (the
database-layer tests make one per test). Tests that stop and start PostgreSQL need the
embedded server and skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdm_tools.stack.processes import (
    LOOPBACK,
    EmbeddedPostgres,
    ManagedProcess,
    free_port,
    log_path,
    pid_alive,
    start_broker,
    start_mlflow,
)

TEST_STACK_PREFIX = "pdm-test-stack-"


def _new_state_dir(kind: str) -> Path:
    """A fresh state dir owned by this pytest process (see `_reap_dead_sessions`)."""
    path = Path(tempfile.mkdtemp(prefix=f"{TEST_STACK_PREFIX}{kind}-"))
    path.chmod(0o755)  # mkdtemp makes 0700; the postgres user must traverse it
    (path / "owner.pid").write_text(f"{os.getpid()}\n")
    return path


def _teardown_state_dir(path: Path) -> None:
    from pdm_tools.stack.stack import down

    down(path, log=lambda _line: None)
    EmbeddedPostgres(path / "postgres", 0).destroy()
    shutil.rmtree(path, ignore_errors=True)


def _reap_dead_sessions() -> None:
    """Stop servers and delete dirs left by test sessions that were killed."""
    for path in Path(tempfile.gettempdir()).glob(f"{TEST_STACK_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if owner != os.getpid() and not pid_alive(owner):
            _teardown_state_dir(path)


@pytest.fixture(scope="session")
def test_state_dir() -> Iterator[Path]:
    """State dir shared by the session-scoped servers."""
    _reap_dead_sessions()
    path = _new_state_dir("session")
    yield path
    _teardown_state_dir(path)


@pytest.fixture(scope="session")
def broker_process(test_state_dir: Path) -> Iterator[ManagedProcess]:
    proc = start_broker(test_state_dir, die_with_parent=True)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(broker_process: ManagedProcess) -> str:
    return f"{LOOPBACK}:{broker_process.port}"


#: An external PostgreSQL/TimescaleDB for the database tests instead of the embedded server.
TEST_DATABASE_URL_ENV = "PDM_TEST_DATABASE_URL"


def external_database_url() -> str | None:
    return os.environ.get(TEST_DATABASE_URL_ENV) or None


@pytest.fixture(scope="session")
def postgres(test_state_dir: Path) -> Iterator[EmbeddedPostgres]:
    if external_database_url():
        pytest.skip(
            f"stops and starts the embedded PostgreSQL; {TEST_DATABASE_URL_ENV} points the "
            "database tests at an external server"
        )
    pg = EmbeddedPostgres(
        test_state_dir / "postgres", free_port(), log_file=log_path(test_state_dir, "postgres")
    )
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(autouse=True)
def _postgres_back_up_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that stops PostgreSQL and fails midway must not break the tests after it."""
    pg = request.getfixturevalue("postgres") if "postgres" in request.fixturenames else None
    yield
    if pg is not None and not pg.is_running():
        pg.start()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> str:
    """PDM_TEST_DATABASE_URL when set, else the embedded server's URL."""
    external = external_database_url()
    if external:
        return external
    pg: EmbeddedPostgres = request.getfixturevalue("postgres")
    return pg.url


@pytest.fixture(scope="session")
def mlflow_uri(test_state_dir: Path) -> Iterator[str]:
    proc = start_mlflow(test_state_dir, die_with_parent=True)
    yield f"http://{LOOPBACK}:{proc.port}"
    proc.stop()


@pytest.fixture
def pdm_env(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, database_url: str
) -> dict[str, str]:
    """Point `CommonSettings` (and anything reading PDM_*) at the test servers."""
    env = {"PDM_KAFKA_BOOTSTRAP": kafka_bootstrap, "PDM_DATABASE_URL": database_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def stack_state_dir() -> Iterator[Path]:
    """An empty state dir for exercising `pdm stack`; whatever it started is stopped after."""
    path = _new_state_dir("stack")
    yield path
    _teardown_state_dir(path)
