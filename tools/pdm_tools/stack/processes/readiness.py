"""Readiness probes: a start waits until its server really answers (TCP, Kafka, HTTP)."""

from __future__ import annotations

import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pdm_tools.stack.processes.errors import _start_error
from pdm_tools.stack.processes.managed import ManagedProcess


def _wait_until(
    probe: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    proc: ManagedProcess | None,
    log_file: Path | None,
    hint: str,
    interval: float = 0.1,
) -> None:
    """Poll `probe` until it is true; fail fast if the process died, with its log tail."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if proc is not None and not proc.is_ours():
            raise _start_error(f"{what}: the process (pid {proc.pid}) exited.", log_file, hint)
        if time.monotonic() > deadline:
            raise _start_error(f"{what}: no answer within {timeout:.0f}s.", log_file, hint)
        time.sleep(interval)


def tcp_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_tcp(
    host: str,
    port: int,
    timeout: float = 30.0,
    *,
    proc: ManagedProcess | None = None,
    log_file: Path | None = None,
) -> None:
    """Wait until host:port accepts connections; ServerStartError (with log tail) otherwise."""
    name = proc.name if proc else "server"
    _wait_until(
        lambda: tcp_answers(host, port),
        what=f"{name} did not start listening on {host}:{port}",
        timeout=timeout,
        proc=proc,
        log_file=log_file or (proc.log_file if proc else None),
        hint=f"Check that no other program holds the port (`ss -ltnp | grep :{port}`), "
        "then run `pdm stack down && pdm stack up`.",
    )


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Brokers (node id, host, port) from a Kafka Metadata v0 request.

    A real protocol round trip, not just a TCP accept, and synchronous so it works from the
    CLI and from inside a running event loop alike. It also proves the advertised listener.
    """
    client_id = b"pdm-stack"
    header = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id  # Metadata v0, corr 1
    request = header + struct.pack(">i", 0)  # empty topic list
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        body = _recv_exact(sock, size)
    (correlation, n_brokers), offset = struct.unpack_from(">ii", body), 8
    if correlation != 1:
        raise ConnectionError(f"unexpected Kafka correlation id {correlation}")
    brokers = []
    for _ in range(n_brokers):
        node_id, host_len = struct.unpack_from(">ih", body, offset)
        offset += 6
        broker_host = body[offset : offset + host_len].decode()
        offset += host_len
        (broker_port,) = struct.unpack_from(">i", body, offset)
        offset += 4
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("Kafka broker closed the connection")
        data += chunk
    return bytes(data)


def kafka_answers(host: str, port: int) -> bool:
    """The broker answers Metadata and advertises the address we connect to."""
    try:
        brokers = kafka_metadata(host, port, timeout=1.0)
    except (OSError, struct.error, ValueError):
        return False
    return any(b_host == host and b_port == port for _, b_host, b_port in brokers)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
