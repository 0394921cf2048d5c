"""Pid files, identity checks, ports and stack.env, without the real servers (fast)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdm_common.settings import CommonSettings
from pdm_tools.stack import stack
from pdm_tools.stack.processes import (
    LOOPBACK,
    EmbeddedPostgres,
    ManagedProcess,
    ServerStartError,
    choose_port,
    cmdline_matches,
    free_port,
    group_members,
    pid_alive,
    port_is_free,
    read_cmdline,
    start_ticks,
    traversable_by,
    wait_for_tcp,
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is NOT one of our servers."""
    proc = subprocess.Popen(["sleep", "60"])
    # Right after fork the child's /proc cmdline can still be empty (it has not exec'd yet).
    deadline = time.monotonic() + 5
    while read_cmdline(proc.pid) != ["sleep", "60"] and time.monotonic() < deadline:
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_pid_file(state_dir: Path, name: str, pid: int, **meta: object) -> None:
    (state_dir / "run").mkdir(parents=True, exist_ok=True)
    (state_dir / "run" / f"{name}.pid").write_text(f"{pid}\n")
    if meta:
        (state_dir / "run" / f"{name}.json").write_text(json.dumps({"pid": pid, **meta}))


def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- ports ----------------------------------------------------------------------------------


def test_free_port_is_bindable_and_taken_port_is_detected() -> None:
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))
        sock.listen()
        assert not port_is_free(port)


def test_choose_port_reuses_the_previous_port_only_when_free() -> None:
    previous = free_port()
    assert choose_port(previous) == previous
    assert choose_port(None) > 0
    with socket.socket() as sock:
        sock.bind((LOOPBACK, previous))
        sock.listen()
        assert choose_port(previous) != previous
    assert choose_port(previous, exclude={previous}) != previous


# -- identity of a pid ------------------------------------------------------------------------


def test_cmdline_matches_by_argument_or_basename() -> None:
    cmd = ["/venv/bin/python", "/venv/bin/mlflow", "server", "--port", "5000"]
    assert cmdline_matches(cmd, ["mlflow", "server", "--port", "5000"])
    assert not cmdline_matches(cmd, ["mlflow", "server", "--port", "5001"])
    assert not cmdline_matches(None, ["mlflow"])
    assert not cmdline_matches(cmd, [])  # nothing to verify against: never "ours"


def test_pid_alive_and_cmdline(sleeper: subprocess.Popen[bytes]) -> None:
    assert pid_alive(sleeper.pid)
    assert read_cmdline(sleeper.pid) == ["sleep", "60"]
    assert not pid_alive(_dead_pid())
    assert read_cmdline(_dead_pid()) is None


def test_stale_pid_file_with_a_dead_pid_is_cleaned_up(tmp_path: Path) -> None:
    _write_pid_file(tmp_path, "broker", _dead_pid(), match=["tansu", "broker"])
    proc = ManagedProcess.from_pid_file("broker", tmp_path)
    assert proc is not None and not proc.is_ours()
    assert proc.stop() is False
    assert not proc.pid_file.exists() and not proc.meta_file.exists()
    assert ManagedProcess.from_pid_file("broker", tmp_path) is None


def test_pid_reused_by_another_program_is_never_killed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    _write_pid_file(tmp_path, "broker", sleeper.pid, match=["tansu", "broker"])
    proc = ManagedProcess.from_pid_file("broker", tmp_path)
    assert proc is not None and not proc.is_ours()
    assert proc.stop(timeout=0.5) is False
    assert sleeper.poll() is None  # still running
    assert not proc.pid_file.exists()


def test_pid_file_without_identity_is_never_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    _write_pid_file(tmp_path, "mlflow", sleeper.pid)  # bare pid file, no .json
    proc = ManagedProcess.from_pid_file("mlflow", tmp_path)
    assert proc is not None and not proc.is_ours()
    proc.stop(timeout=0.5)
    assert sleeper.poll() is None


def test_same_cmdline_but_different_start_time_is_not_ours(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    _write_pid_file(tmp_path, "x", sleeper.pid, match=["sleep", "60"], start_ticks=ticks - 1)
    proc = ManagedProcess.from_pid_file("x", tmp_path)
    assert proc is not None and not proc.is_ours()
    proc.stop(timeout=0.5)
    assert sleeper.poll() is None


def test_spawned_process_round_trips_through_its_pid_file(tmp_path: Path) -> None:
    spawned = ManagedProcess.spawn("sleeper", ["sleep", "61"], tmp_path, port=1234)
    proc = ManagedProcess.from_pid_file("sleeper", tmp_path)
    assert proc is not None
    assert (proc.pid, proc.port, proc.is_ours()) == (spawned.pid, 1234, True)
    assert os.getpgid(proc.pid) == proc.pid  # own process group
    assert proc.stop(timeout=5) is True
    assert _wait_dead(spawned.pid)
    assert not proc.pid_file.exists()


def test_stop_reaches_children_that_outlived_their_leader(tmp_path: Path) -> None:
    # Like MLflow: the leader runs the server in a child; SIGKILL only hits the leader.
    leader = ManagedProcess.spawn("tree", ["sh", "-c", "sleep 62 & wait"], tmp_path)
    deadline = time.monotonic() + 5
    while len(group_members(leader.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    child = next(p for p in group_members(leader.pid) if p != leader.pid)
    os.kill(leader.pid, signal.SIGKILL)
    assert _wait_dead(leader.pid)
    assert pid_alive(child)

    stale = ManagedProcess.from_pid_file("tree", tmp_path)
    assert stale is not None and not stale.is_ours() and stale.orphans() == [child]
    assert stale.stop(timeout=5) is True
    assert _wait_dead(child)


def test_group_members_without_our_tag_are_left_alone(tmp_path: Path) -> None:
    # A group whose (reused) leader id matches a stale pid file, but not our process tree.
    leader = ManagedProcess.spawn("tree", ["sh", "-c", "sleep 64 & wait"], tmp_path)
    deadline = time.monotonic() + 5
    while len(group_members(leader.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    child = next(p for p in group_members(leader.pid) if p != leader.pid)
    os.kill(leader.pid, signal.SIGKILL)
    assert _wait_dead(leader.pid)
    meta = json.loads(leader.meta_file.read_text())
    leader.meta_file.write_text(json.dumps({**meta, "tag": "tree-someone-else"}))
    try:
        stale = ManagedProcess.from_pid_file("tree", tmp_path)
        assert stale is not None and stale.orphans() == []
        assert stale.stop(timeout=0.5) is False
        assert pid_alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    proc = ManagedProcess.spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 63"], tmp_path)
    time.sleep(0.1)  # let the shell install its trap
    t0 = time.monotonic()
    assert proc.stop(timeout=0.5) is True
    assert time.monotonic() - t0 < 5
    assert _wait_dead(proc.pid) and not group_members(proc.pid)


def test_start_failure_names_the_log_and_shows_its_tail(tmp_path: Path) -> None:
    proc = ManagedProcess.spawn("crashy", ["sh", "-c", "echo 'fatal: boom'; exit 3"], tmp_path)
    with pytest.raises(ServerStartError) as err:
        wait_for_tcp(LOOPBACK, free_port(), timeout=5, proc=proc)
    message = str(err.value)
    assert str(proc.log_file) in message and "fatal: boom" in message
    assert "exited" in message


# -- PostgreSQL placement -------------------------------------------------------------------


def test_traversable_by_follows_the_mode_bits() -> None:
    root = Path(tempfile.mkdtemp())
    try:
        root.chmod(0o755)
        (root / "open").mkdir(mode=0o755)
        (root / "closed").mkdir(mode=0o700)
        nobody = 65534
        assert traversable_by(root / "open" / "data", nobody, [nobody])
        assert not traversable_by(root / "closed" / "data", nobody, [nobody])
        assert traversable_by(root / "closed" / "data", os.getuid(), [])  # owner bits
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="relocation only happens for root")
def test_postgres_data_dir_moves_out_of_a_private_parent() -> None:
    private = Path(tempfile.mkdtemp())  # 0700
    try:
        pg = EmbeddedPostgres(private / "pg", 5432)
        assert pg.data_dir != pg.requested_data_dir
        assert traversable_by(pg.data_dir, 65534, [65534])
        assert EmbeddedPostgres(private / "pg", 5432).data_dir == pg.data_dir  # stable
        assert pg.url == "postgresql://pdm@127.0.0.1:5432/pdm"
    finally:
        shutil.rmtree(private)


# -- stack.env and status -------------------------------------------------------------------


def test_stack_env_round_trip_and_settings_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "PDM_KAFKA_BOOTSTRAP": "127.0.0.1:40001",
        "PDM_DATABASE_URL": "postgresql://pdm@127.0.0.1:40002/pdm",
        "PDM_MLFLOW_TRACKING_URI": "http://127.0.0.1:40003",
    }
    path = tmp_path / "stack.env"
    stack.write_env_file(path, env)
    assert stack.read_env_file(path) == env
    assert path.read_text().startswith("#")
    for key in env:
        monkeypatch.delenv(key, raising=False)
    settings = CommonSettings(_env_file=path)  # type: ignore[call-arg]
    assert settings.kafka_bootstrap == "127.0.0.1:40001"
    assert settings.database_url == env["PDM_DATABASE_URL"]
    assert settings.mlflow_tracking_uri == env["PDM_MLFLOW_TRACKING_URI"]


def test_read_env_file_tolerates_hand_edits(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    path.write_text("# c\n\nexport A=1\nB = 'two'\nnot a setting\n")
    assert stack.read_env_file(path) == {"A": "1", "B": "two"}
    assert stack.read_env_file(tmp_path / "missing.env") == {}


def test_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    rows = stack.status(tmp_path)
    assert [(r.name, r.state) for r in rows] == [
        ("broker", "stopped"),
        ("postgres", "stopped"),
        ("mlflow", "stopped"),
    ]
    assert "component" in stack.format_status(rows)


def test_status_reports_a_stale_pid_file_as_dead(tmp_path: Path) -> None:
    _write_pid_file(tmp_path, "broker", _dead_pid(), port=40001, match=["tansu"])
    row = stack.status(tmp_path)[0]
    assert (row.name, row.state, row.port) == ("broker", "dead", 40001)
    assert "stale pid file" in row.note
