"""What every benchmark needs: a fresh broker and PostgreSQL, a migrated database, one real
service process, its metrics, and its resource use. Benchmarks run as scripts
(`python bench/<name>.py`), so this module sits next to them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BASELINES = REPO / "bench" / "baseline"


@dataclass
class Stack:
    state: Path
    bootstrap: str
    database_url: str
    broker_pid: int

    def env(self, **extra: str) -> dict[str, str]:
        base = {"PDM_KAFKA_BOOTSTRAP": self.bootstrap, "PDM_DATABASE_URL": self.database_url}
        return dict(os.environ) | base | extra


@contextlib.contextmanager
def fresh_stack(name: str) -> Iterator[Stack]:
    """A new tansu broker and PostgreSQL in a temp dir, migrated; all removed afterwards."""
    from pdm_tools.stack.processes import EmbeddedPostgres, free_port, start_broker

    state = Path(tempfile.mkdtemp(prefix=f"pdm-bench-{name}-"))
    state.chmod(0o755)  # the unprivileged PostgreSQL user must reach it
    broker = start_broker(state, die_with_parent=True)
    pg = EmbeddedPostgres(state / "postgres", free_port())
    try:
        pg.start()
        stack = Stack(state, f"127.0.0.1:{broker.port}", pg.url, broker.pid)
        subprocess.run(
            [sys.executable, "-m", "pdm_tools.cli", "migrate"],
            env=stack.env(),
            check=True,
            capture_output=True,
        )
        yield stack
    finally:
        pg.destroy()
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def service(
    stack: Stack, name: str, env: dict[str, str], prefix: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run `python -m pdm_<name>` (optionally under `prefix`, e.g. py-spy) on a free port."""
    from pdm_tools.stack.processes import free_port

    port = free_port()
    log = (stack.state / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", f"pdm_{name}"],
        env=stack.env(**env) | {f"PDM_{name.upper()}_HTTP_PORT": str(port)},
        stdout=log,
        stderr=log,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        yield proc, port
    finally:
        proc.send_signal(signal.SIGINT)  # graceful for uvicorn; py-spy writes its profile
        try:
            proc.wait(30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # a profiler's child too


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def metric(text: str, prefix: str) -> float:
    """Sum of the samples whose line starts with `prefix` (a name, or a name and labels)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(cond, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.1)


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+)", status)
    return round(int(match.group(1)) / 1024, 1) if match else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU seconds of every postgres process on the machine (run benchmarks on a quiet one)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if b"postgres" in (proc / "cmdline").read_bytes():
                    total += cpu_seconds(int(proc.name))
    return total


async def send_all(
    bootstrap: str, topic: str, msgs: Sequence[tuple[bytes, bytes]], linger_ms: int = 5
) -> float:
    """Publish (key, value) pairs as a gateway would (acks=all); returns the seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, v, key=k) for k, v in msgs]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def create_key(stack: Stack, scopes: str) -> str:
    """An API key through the real CLI, its rate limit high enough never to throttle."""
    out = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", "apikey", "create", "--name", "bench",
         "--scopes", scopes, "--rate-limit", "1000000", "--quiet"],
        env=stack.env(),
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return out.stdout.strip()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def save(name: str, result: dict[str, object], *, as_baseline: bool) -> dict[str, object] | None:
    """Write the run to bench/results/; return the committed baseline to compare with."""
    import json

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = str(result["when"]).replace(":", "")
    (RESULTS / f"{name}-{stamp}.json").write_text(json.dumps(result, indent=2))
    baseline = BASELINES / f"{name}.json"
    previous = json.loads(baseline.read_text()) if baseline.exists() else None
    if as_baseline:
        BASELINES.mkdir(parents=True, exist_ok=True)
        baseline.write_text(json.dumps(result, indent=2))
        print(f"saved as baseline: {baseline}")
    return previous
