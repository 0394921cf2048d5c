"""The database watch: a refused connection is known at once, and says why."""

from __future__ import annotations

import socket
import time

from pdm_common.db.watch import DatabaseWatch


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_marks_the_database_down_at_once() -> None:
    watch = DatabaseWatch(f"postgresql://pdm@127.0.0.1:{closed_port()}/pdm", timeout_s=3)
    assert watch.down is None  # not known to be down before a ping
    started = time.monotonic()
    assert await watch.check() is False
    assert time.monotonic() - started < 2.5  # refused, not waited out (timeout_s = 3)
    assert watch.down is not None and "connection" in watch.down.lower()
    assert watch.down_since is not None
