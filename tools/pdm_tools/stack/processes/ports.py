"""Loopback TCP ports of the embedded servers: a free one, or the previous run's again."""

from __future__ import annotations

import socket
from collections.abc import Collection

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free right now (the kernel picks it; a tiny race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on host:port, so a previous run's port can be reused.

    SO_REUSEADDR like the servers themselves: connections of a killed server linger in
    TIME_WAIT for a minute and would otherwise make its port look taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(
    previous: int | None, host: str = LOOPBACK, *, exclude: Collection[int] = ()
) -> int:
    """Reuse `previous` when it is free (stable URLs across restarts), else pick a free one.

    `exclude` holds ports already promised to servers that have not bound them yet.
    """
    if previous and previous not in exclude and port_is_free(previous, host):
        return previous
    while (port := free_port(host)) in exclude:
        pass
    return port
