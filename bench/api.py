"""API gateway benchmark: latest-reading reads (cold and warm), database-bound reads, the
WebSocket fan-out, and the gateway's memory.

Starts a fresh broker and PostgreSQL, migrates, stores a fleet directly with COPY (the
latest readings of `--assets` assets x 8 sensors, a day of history for `--history-assets`
of them, `--alarms` alarms), creates an API key with the gateway's own CLI (`pdm apikey
create`, rate limit 1,000,000/s so the limiter never throttles), and runs one real gateway
(`python -m pdm_gateway`: uvicorn + uvloop + httptools, one process). Then:

1. `GET /v1/assets/{id}/readings/latest`
   - cold: every asset read once (its first read goes to the database and fills the read
     model), the fleet split into one slice per concurrency;
   - warm: closed loop (each connection sends its next request when the answer arrives) for
     `--seconds` at each concurrency, random cached assets;
   - fixed rate: each of `--rate` (2,000 and 3,000) requests/s offered for `--seconds` (open
     loop, latency counted from the time each request was due, so a server that falls behind
     is not hidden by a client that waits for it);
2. database-bound reads at `--db-concurrency`: hourly averages over a day
   (`?bucket=1h&agg=avg&from=..&to=..`, 24 buckets x 8 sensors from 23,040 rows), a raw
   page (`?limit=500`, the last hour), and `GET /v1/alarms` (100 of `--alarms`);
3. WebSocket fan-out: `--ws-clients` clients on `/v1/stream?types=reading&api_key=..` (in
   `--ws-procs` separate processes) while this process publishes `pdm.readings.validated.v1`
   events (as ingest would, one 8-sensor snapshot each) at each of `--ws-rates` events/s for
   `--ws-seconds`: frames delivered per client and in total, publish-to-receipt latency, events
   dropped for slow clients (the `{"type":"dropped"}` frames and the gateway's counter);
4. the gateway's RSS (current and peak).

The HTTP load generator is this process: one uvloop event loop with one keep-alive HTTP/1.1
connection per concurrent client, requests written as bytes and answers parsed with
httptools: ~40 us of client CPU a request. (`--client httpx` uses one httpx.AsyncClient
instead: 1.5 ms of client CPU a request at 8 connections, 7 ms at 64; it saturates a core at
~600 req/s and measures itself, not the gateway.) Client, gateway and PostgreSQL share the
machine's cores, so every phase reports the CPU each used, in cores, and the CPU used by
anything else on the machine; `--wait-quiet S` waits (up to S seconds in all) before each
phase until the machine is idle. The WebSocket clients are `websockets` clients, which offer
permessage-deflate as browsers do (`--ws-compression none` to measure without it).

    .venv/bin/python bench/api.py                      # 3,000 assets; 10 s a phase
    .venv/bin/python bench/api.py --quick              # smaller and shorter (~1 min)
    .venv/bin/python bench/api.py --wait-quiet 1800    # on a machine shared with other jobs
    .venv/bin/python bench/api.py --py-spy /tmp/gw.txt # + profiled phases (py-spy, raw stacks)
    .venv/bin/python bench/api.py --save-baseline      # record this run as the baseline

Results go to bench/results/api-<time>.json and are compared with bench/baseline/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

import benchkit

SENSORS = ("temperature", "vibration", "pressure", "power", "speed", "torque", "current", "flow")
GOAL_RPS, GOAL_P99_MS = 3000, 20.0
Request = Callable[[str], Awaitable[tuple[int, bytes]]]


# --- the data -------------------------------------------------------------------------------


def store_fleet(
    url: str, assets: Sequence[str], snapshots: int, history: int, hours: float, step_s: int
) -> int:
    """Latest `snapshots` (1 s apart) of every asset; `hours` of history every `step_s` for
    the first `history` assets. Rows are written in primary-key order (cheap index inserts)."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY readings (asset_id, sensor, time, value) FROM STDIN") as copy:
            for n, asset in enumerate(assets):
                if n < history:
                    times = [
                        now - timedelta(seconds=s) for s in range(int(hours * 3600), 0, -step_s)
                    ]
                else:
                    times = []
                times += [now - timedelta(seconds=s) for s in range(snapshots - 1, -1, -1)]
                for j, sensor in enumerate(SENSORS):
                    for k, t in enumerate(times):
                        copy.write_row((asset, sensor, t, 20.0 + j + (k % 97) * 0.1))
                rows += len(times) * len(SENSORS)
        with cur.copy("COPY assets (asset_id, asset_type) FROM STDIN") as copy:
            for asset in assets:
                copy.write_row((asset, "pump"))
    return rows


def store_alarms(url: str, assets: Sequence[str], n: int) -> None:
    """`n` alarms over the fleet, one in ten open, opened over the last week."""
    now = datetime.now(UTC)
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY alarms (alarm_id, asset_id, asset_type, condition, status, severity, detector, "
            "score, threshold, contributors, opened_at, last_anomalous_at, cleared_at) FROM STDIN"
        ) as copy,
    ):
        for i in range(n):
            opened = now - timedelta(seconds=600 * i)
            is_open = i % 10 == 0
            sensor = SENSORS[(i // len(assets)) % len(SENSORS)]
            copy.write_row(
                (
                    uuid.uuid4(),
                    assets[i % len(assets)],
                    "pump",
                    f"{sensor}_high",
                    "open" if is_open else "cleared",
                    ("warning", "major", "critical")[i % 3],
                    "univariate",
                    4.2,
                    3.0,
                    json.dumps({sensor: 4.2}),
                    opened,
                    opened + timedelta(seconds=30),
                    None if is_open else opened + timedelta(seconds=300),
                )
            )


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            return bool(json.loads(r.read())["ready"])
    except (OSError, ValueError):
        return False


# --- who used the CPU -----------------------------------------------------------------------


def postgres_pids(state: Path) -> list[int]:
    """This stack's postmaster (its command line names our data dir) and its children."""
    procs: dict[int, int] = {}
    master = None
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            procs[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (p / "cmdline").read_bytes()
            if master is None and b"postgres" in cmdline and str(state).encode() in cmdline:
                master = int(p.name)
    return [] if master is None else [master, *(pid for pid, pp in procs.items() if pp == master)]


def machine_busy_s() -> float:
    """CPU seconds spent by the whole machine (all cores) so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Quiet:
    """Waits before each phase until the rest of the machine uses at most `threshold` cores
    (other jobs on the two cores skew every figure), within a total budget of `budget_s`.
    Between phases our own processes are idle, so what is busy then is someone else."""

    def __init__(self, budget_s: float, threshold: float = 0.3) -> None:
        self.deadline = time.monotonic() + budget_s
        self.enabled = budget_s > 0
        self.threshold = threshold

    def wait(self) -> float | None:
        """Cores in use over the last 2 s before the phase starts (None when not waiting)."""
        if not self.enabled:
            return None
        while True:
            before = machine_busy_s()
            time.sleep(2)
            busy = (machine_busy_s() - before) / 2
            if busy <= self.threshold or time.monotonic() >= self.deadline:
                return round(busy, 2)
            print(f"    machine busy ({busy:.2f} cores in use); waiting ...", flush=True)


class Meter:
    """CPU used, in cores, over one phase: the client (this process and its helpers), the
    gateway, our PostgreSQL (the postmaster and its children, also those forked during the
    phase), and everything else on the machine."""

    def __init__(self, gateway: int, state: Path, helpers: Sequence[int] = ()) -> None:
        self.groups: dict[str, Callable[[], list[int]]] = {
            "gateway": lambda: [gateway],
            "postgres": lambda: postgres_pids(state),
            "client": lambda: [os.getpid(), *helpers],
        }
        self.wall = time.perf_counter()
        self.machine = machine_busy_s()
        self.start = self._read()

    def _read(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, pids in self.groups.items():
            out[name] = {}
            for pid in pids():
                with contextlib.suppress(OSError):
                    out[name][pid] = benchkit.cpu_seconds(pid)
        return out

    def stop(self) -> dict[str, float]:
        end = self._read()
        wall = time.perf_counter() - self.wall
        machine = (machine_busy_s() - self.machine) / wall
        cores = {
            name: sum(cpu - self.start[name].get(pid, 0.0) for pid, cpu in pids.items()) / wall
            for name, pids in end.items()
        }
        other = max(0.0, machine - sum(cores.values()))
        return {f"{k}_cores": round(v, 2) for k, v in cores.items()} | {
            "other_cores": round(other, 2)
        }


# --- HTTP load ------------------------------------------------------------------------------


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.done: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.done is not None and not self.done.done():
            self.done.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc!r}"))


class RawHttp:
    """One keep-alive HTTP/1.1 connection, one request at a time, the answer parsed with
    httptools: about the cheapest client Python has, so the CPU measured is the gateway's.
    Reconnects when the server closed it (uvicorn closes connections idle for 5 s)."""

    def __init__(self, port: int, head: bytes) -> None:
        self.port = port
        self.head = head
        self.conn: _Http | None = None
        self.reconnects = 0

    async def _connect(self) -> _Http:
        loop = asyncio.get_running_loop()
        _t, self.conn = await loop.create_connection(_Http, "127.0.0.1", self.port)
        return self.conn

    async def get(self, path: str) -> tuple[int, bytes]:
        request = b"GET " + path.encode() + self.head
        for attempt in range(2):
            conn = self.conn
            if conn is None or conn.transport is None or conn.transport.is_closing():
                self.reconnects += attempt == 0 and conn is not None
                conn = await self._connect()
            assert conn.transport is not None
            conn.done = asyncio.get_running_loop().create_future()
            conn.transport.write(request)
            try:
                return await conn.done
            except ConnectionError:
                if attempt:
                    raise
                conn.transport.close()  # closed by the server as we sent: once more
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


async def open_clients(kind: str, port: int, key: str, n: int) -> tuple[list[Request], Callable]:
    """`n` request functions (one per concurrent client) and a closer."""
    if kind == "httpx":
        import httpx

        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            timeout=60,
        )

        async def get(path: str) -> tuple[int, bytes]:
            r = await client.get(path)
            return r.status_code, r.content

        return [get] * n, client.aclose
    head = f" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    conns = [RawHttp(port, head) for _ in range(n)]
    for c in conns:
        await c._connect()

    async def close() -> None:
        for c in conns:
            c.close()

    return [c.get for c in conns], close


def latency_figures(lat_s: list[float]) -> dict[str, float | None]:
    if not lat_s:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    s = sorted(lat_s)

    def q(p: float) -> float:
        return round(1000 * s[min(len(s) - 1, int(p * len(s)))], 2)

    return {"p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0)}


class Tally:
    """What one phase saw: latencies, statuses, answer sizes, and a content check."""

    def __init__(self, must_contain: bytes | None) -> None:
        self.lat: list[float] = []
        self.status: Counter[int] = Counter()
        self.bytes = 0
        self.must_contain = must_contain
        self.unexpected = 0

    def add(self, latency: float, status: int, body: bytes) -> None:
        self.lat.append(latency)
        self.status[status] += 1
        self.bytes += len(body)
        if status != 200 or (self.must_contain is not None and self.must_contain not in body):
            self.unexpected += 1

    def figures(self, elapsed: float, meter: dict[str, float]) -> dict[str, object]:
        n = len(self.lat)
        return {
            "requests": n,
            "seconds": round(elapsed, 2),
            "req_per_s": round(n / elapsed) if elapsed else 0,
            **latency_figures(self.lat),
            "mean_response_bytes": round(self.bytes / n) if n else 0,
            "non_200": sum(c for s, c in self.status.items() if s != 200),
            "unexpected_bodies": self.unexpected,
            **meter,
        }


async def closed_loop(
    clients: Sequence[Request],
    path: Callable[[int], str],
    meter: Callable[[], Meter],
    *,
    seconds: float | None = None,
    total: int | None = None,
    must_contain: bytes | None = None,
) -> dict[str, object]:
    """Each client sends its next request when the previous answer arrives, until `seconds`
    have passed or `total` requests were sent."""
    tally = Tally(must_contain)
    issued = 0
    deadline = time.perf_counter() + (seconds or 1e9)

    async def run(get: Request) -> None:
        nonlocal issued
        while (total is None or issued < total) and time.perf_counter() < deadline:
            i, issued = issued, issued + 1
            t = time.perf_counter()
            status, body = await get(path(i))
            tally.add(time.perf_counter() - t, status, body)

    m = meter()
    started = time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    elapsed = time.perf_counter() - started
    return {"concurrency": len(clients)} | tally.figures(elapsed, m.stop())


async def fixed_rate(
    clients: Sequence[Request],
    path: Callable[[int], str],
    meter: Callable[[], Meter],
    rate: float,
    seconds: float,
    must_contain: bytes | None = None,
) -> dict[str, object]:
    """Open loop: request i is due at start + i/rate and goes out on the first free
    connection; its latency counts from when it was due."""
    tally = Tally(must_contain)
    n = int(rate * seconds)
    issued = 0
    m = meter()
    t0 = time.perf_counter() + 0.01

    async def run(get: Request) -> None:
        nonlocal issued
        while issued < n:
            i, issued = issued, issued + 1
            due = t0 + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            status, body = await get(path(i))
            tally.add(time.perf_counter() - due, status, body)

    await asyncio.gather(*(run(c) for c in clients))
    elapsed = time.perf_counter() - t0
    return {"offered_per_s": rate, "connections": len(clients)} | tally.figures(elapsed, m.stop())


async def http_phases(
    args: argparse.Namespace,
    quiet: Quiet,
    port: int,
    key: str,
    assets: list[str],
    meter: Callable[[], Meter],
    profile: Callable[[float], Callable[[], None]] | None,
) -> dict[str, object]:
    out: dict[str, object] = {}
    latest = [f"/v1/assets/{a}/readings/latest" for a in assets]

    async def gate() -> dict[str, object]:
        busy = await asyncio.to_thread(quiet.wait)
        return {} if busy is None else {"busy_before_cores": busy}

    top = max([*args.concurrency, args.rate_connections, args.db_concurrency])
    clients, close = await open_clients(args.client, port, key, top)
    try:
        # Warm up the server's HTTP path without touching the read model.
        await closed_loop(clients[:4], lambda i: "/health", meter, total=200)

        cold = []
        slices = [assets[i :: len(args.concurrency)] for i in range(len(args.concurrency))]
        for c, chunk in zip(args.concurrency, slices, strict=True):
            paths = [f"/v1/assets/{a}/readings/latest" for a in chunk]
            before = await gate()
            figures = before | await closed_loop(
                clients[:c],
                paths.__getitem__,
                meter,
                total=len(paths),
                must_contain=b'"source":"database"',
            )
            cold.append(figures)
            print(f"  cold c={c}: {_line(figures)}", flush=True)
        out["latest_cold"] = cold

        rng = random.Random(1)
        order = [rng.randrange(len(latest)) for _ in range(1 << 16)]

        def warm_path(i: int) -> str:
            return latest[order[i & 0xFFFF]]

        warm = []
        for c in args.concurrency:
            before = await gate()
            await closed_loop(clients[:c], warm_path, meter, seconds=1)  # settle
            figures = before | await closed_loop(
                clients[:c], warm_path, meter, seconds=args.seconds, must_contain=b'"cache"'
            )
            warm.append(figures)
            print(f"  warm c={c}: {_line(figures)}", flush=True)
        out["latest_warm"] = warm

        fixed = []
        for rate in args.rate:
            before = await gate()
            figures = before | await fixed_rate(
                clients[: args.rate_connections],
                warm_path,
                meter,
                rate,
                args.seconds,
                must_contain=b'"cache"',
            )
            fixed.append(figures)
            print(f"  warm at {rate:,.0f}/s offered: {_line(figures)}", flush=True)
        out["latest_fixed_rate"] = fixed

        if profile is not None:
            await gate()
            stop = profile(args.seconds)
            figures = await closed_loop(
                clients[:32], warm_path, meter, seconds=args.seconds, must_contain=b'"cache"'
            )
            stop()
            out["latest_warm_profiled"] = figures
            print(f"  warm c=32 under py-spy: {_line(figures)}", flush=True)

        history = assets[: args.history_assets]
        to = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        span = f"from={(to - timedelta(hours=24)):%Y-%m-%dT%H:%M:%SZ}&to={to:%Y-%m-%dT%H:%M:%SZ}"
        db_reads = {
            "readings_bucketed_1h_24h": (
                [f"/v1/assets/{a}/readings?bucket=1h&agg=avg&{span}" for a in history],
                b'"items":[{',
            ),
            "readings_raw_page_500": (
                [f"/v1/assets/{a}/readings?limit=500" for a in history],
                b'"next_cursor":"',
            ),
            "alarms_page_100": (["/v1/alarms"], b'"next_cursor":"'),
        }
        c = args.db_concurrency
        for name, (paths, marker) in db_reads.items():
            before = await gate()
            await closed_loop(clients[:c], lambda i, p=paths: p[i % len(p)], meter, seconds=1)
            figures = before | await closed_loop(
                clients[:c],
                lambda i, p=paths: p[i % len(p)],
                meter,
                seconds=args.seconds,
                must_contain=marker,
            )
            out[name] = figures
            print(f"  {name} c={c}: {_line(figures)}", flush=True)
    finally:
        await close()
    return out


def _line(f: dict[str, object]) -> str:
    return (
        f"{f['req_per_s']:>6,} req/s  p50 {f['p50_ms']} ms  p95 {f['p95_ms']} ms  "
        f"p99 {f['p99_ms']} ms  (cores: gateway {f['gateway_cores']}, client "
        f"{f['client_cores']}, postgres {f['postgres_cores']}, other {f['other_cores']})"
        + (f"  NON-200 {f['non_200']}" if f["non_200"] else "")
        + (f"  UNEXPECTED {f['unexpected_bodies']}" if f["unexpected_bodies"] else "")
    )


# --- WebSocket fan-out ----------------------------------------------------------------------


async def ws_worker(port: int, key: str, n: int, compression: str) -> None:
    """A helper process: `n` stream clients. Reads commands on stdin: `report` prints (and
    resets) what each client received since the last report; `stop` ends."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/v1/stream?types=reading&api_key={key}"
    received = [0] * n
    dropped = [0] * n  # the gateway's running count per client, from `dropped` frames
    closed: list[str | None] = [None] * n
    lat: list[float] = []
    last_at = [0.0]
    subscribed = 0
    all_in = asyncio.Event()

    async def client(i: int) -> None:
        nonlocal subscribed
        try:
            async with connect(
                url, compression="deflate" if compression == "deflate" else None, max_size=None
            ) as ws:
                assert json.loads(await ws.recv())["type"] == "subscribed"
                subscribed += 1
                if subscribed == n:
                    all_in.set()
                async for raw in ws:
                    now = time.time()
                    # Cheaper than json.loads of every frame: the frame head is the
                    # gateway's json.dumps, the event is pydantic's compact JSON.
                    if isinstance(raw, str) and raw.startswith('{"type": "reading"'):
                        received[i] += 1
                        at = raw.index('"occurred_at":"') + 15
                        sent = datetime.fromisoformat(raw[at : raw.index('"', at)])
                        lat.append(now - sent.timestamp())
                        last_at[0] = now
                    else:
                        frame = json.loads(raw)
                        if frame["type"] == "dropped":
                            dropped[i] = frame["dropped"]
                closed[i] = f"closed {ws.close_code}"
        except Exception as exc:
            closed[i] = repr(exc)[:200]

    tasks = [asyncio.create_task(client(i)) for i in range(n)]
    await asyncio.wait_for(all_in.wait(), 60)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    base_dropped = [0] * n
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command in ("stop", ""):  # "" = end of input: the benchmark has gone
            break
        if command == "report":
            report = {
                "received": received[:],
                "dropped": [d - b for d, b in zip(dropped, base_dropped, strict=True)],
                "closed": [c for c in closed if c],
                "latencies": [round(x, 6) for x in lat],
                "last_at": last_at[0],
            }
            received[:] = [0] * n
            base_dropped = dropped[:]
            lat.clear()
            print(json.dumps(report), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def publish_at_rate(
    bootstrap: str, assets: Sequence[str], rate: float, seconds: float
) -> tuple[int, float, float]:
    """`pdm.readings.validated.v1` events as ingest publishes them (envelope, key = asset id,
    `event_type` header), one 8-sensor snapshot each, `rate` per second, `occurred_at` set at
    the moment of the send; returns (events, seconds taken, wall-clock time of the first)."""
    from aiokafka import AIOKafkaProducer

    from pdm_common import topics
    from pdm_common.events import ReadingsValidated, ValidatedSnapshot

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=1, max_batch_size=1 << 20
    )
    await producer.start()
    headers = [("content-type", b"application/json"), ("event_type", b"readings.validated")]
    try:
        n = int(rate * seconds)
        sent = 0
        pending = []
        first = time.time()
        t0 = time.perf_counter()
        while sent < n:
            due = min(n, int((time.perf_counter() - t0) * rate) + 1)
            while sent < due:
                asset = assets[sent % len(assets)]
                now = datetime.now(UTC)
                event = ReadingsValidated(
                    source="ingest",
                    asset_id=asset,
                    asset_type="pump",
                    snapshots=[
                        ValidatedSnapshot(
                            ts=now, readings={s: 20.0 + j + sent % 7 for j, s in enumerate(SENSORS)}
                        )
                    ],
                )
                pending.append(
                    await producer.send(
                        topics.READINGS_VALIDATED, event.to_json(), asset.encode(), headers=headers
                    )
                )
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*pending)
        return n, time.perf_counter() - t0, first
    finally:
        await producer.stop()


def fanout(
    args: argparse.Namespace,
    quiet: Quiet,
    profile: Callable[[float], Callable[[], None]] | None,
    stack: benchkit.Stack,
    port: int,
    key: str,
    assets: list[str],
    gateway: int,
) -> dict[str, object]:
    per_proc = [args.ws_clients // args.ws_procs] * args.ws_procs
    per_proc[0] += args.ws_clients - sum(per_proc)
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--ws-worker", str(port), key, str(n), args.ws_compression],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=benchkit.REPO,
        )
        for n in per_proc
    ]
    out: dict[str, object] = {
        "clients": args.ws_clients,
        "client_processes": args.ws_procs,
        "compression": args.ws_compression,
        "steps": [],
    }

    def ask(command: str) -> list[dict]:
        for w in workers:
            assert w.stdin is not None
            w.stdin.write(command + "\n")
            w.stdin.flush()
        return [json.loads(w.stdout.readline()) for w in workers if w.stdout is not None]

    def counters() -> tuple[float, float]:
        text = benchkit.scrape(port)
        return (
            benchkit.metric(text, "pdm_gateway_stream_sent_total"),
            benchkit.metric(text, "pdm_gateway_stream_dropped_total"),
        )

    try:
        for w in workers:
            assert w.stdout is not None
            if w.stdout.readline().strip() != "ready":
                raise SystemExit("a WebSocket client process did not connect its clients")
        steps = [(rate, False) for rate in args.ws_rates]
        if profile is not None:  # once more at the highest rate, under py-spy
            steps.append((max(args.ws_rates), True))
        for rate, profiled in steps:
            busy = quiet.wait()
            stop_profile = (
                profile(args.ws_seconds + 2) if profile is not None and profiled else None
            )
            ask("report")  # reset
            sent0, dropped0 = counters()
            m = Meter(gateway, stack.state, [w.pid for w in workers])
            published, publish_s, first = asyncio.run(
                publish_at_rate(stack.bootstrap, assets, rate, args.ws_seconds)
            )
            expected = published * args.ws_clients
            # Drain: until every frame was sent or dropped, or nothing moves for 3 s.
            last, finished, deadline = -1.0, time.monotonic(), time.monotonic() + 120
            while time.monotonic() < deadline:
                sent, dropped = counters()
                done = sent - sent0 + dropped - dropped0
                if done != last:
                    last, finished = done, time.monotonic()
                if done >= expected or time.monotonic() - finished > 3:
                    break
                time.sleep(0.2)
            time.sleep(0.3)  # the last frames in flight reach the clients
            cpu = m.stop()
            if stop_profile is not None:
                stop_profile()
            sent, dropped = counters()
            reports = ask("report")
            received = [r for rep in reports for r in rep["received"]]
            client_dropped = [d for rep in reports for d in rep["dropped"]]
            lat = [x for rep in reports for x in rep["latencies"]]
            closed = [c for rep in reports for c in rep["closed"]]
            # From the first publish to the last frame received: longer than the publishing
            # when the gateway falls behind.
            elapsed = max(max(rep["last_at"] for rep in reports) - first, publish_s)
            step = {
                "events_per_s": rate,
                "published": published,
                "publish_s": round(publish_s, 2),
                "delivered_in_s": round(elapsed, 2),
                "frames_expected": expected,
                "frames_received": sum(received),
                "frames_per_s_total": round(sum(received) / elapsed),
                "frames_per_s_per_client_min": round(min(received) / elapsed, 1),
                "frames_per_s_per_client_mean": round(statistics.mean(received) / elapsed, 1),
                "missing_frames": expected - sum(received),
                "clients_missing_any": sum(1 for r in received if r < published),
                "dropped_reported_to_clients": sum(client_dropped),
                "gateway_dropped_total": int(dropped - dropped0),
                "gateway_sent_total": int(sent - sent0),
                "clients_disconnected": len(closed),
                "latency": latency_figures(lat),
                **cpu,
                **({} if busy is None else {"busy_before_cores": busy}),
            }
            if profiled:
                out["profiled_step"] = step
            else:
                out["steps"].append(step)  # type: ignore[attr-defined]
            print(
                f"  {rate:,} events/s x {args.ws_clients} clients"
                f"{' (under py-spy)' if profiled else ''}: "
                f"{step['frames_per_s_total']:,} frames/s delivered (in "
                f"{step['delivered_in_s']} s for {step['publish_s']} s of publishing), "
                f"missing {step['missing_frames']:,} (gateway dropped "
                f"{step['gateway_dropped_total']:,}), latency p50 "
                f"{step['latency']['p50_ms']} ms p99 {step['latency']['p99_ms']} ms  (cores: "
                f"gateway {cpu['gateway_cores']}, clients {cpu['client_cores']}, other "
                f"{cpu['other_cores']})" + (f"  DISCONNECTED {len(closed)}" if closed else ""),
                flush=True,
            )
            if closed:
                print(f"    {closed[:3]}", flush=True)
                break
    finally:
        for w in workers:
            with contextlib.suppress(Exception):
                assert w.stdin is not None
                w.stdin.write("stop\n")
                w.stdin.flush()
        for w in workers:
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
    return out


# --- profile --------------------------------------------------------------------------------


def start_profile(pid: int, out: str) -> Callable[[float], Callable[[], None]]:
    """py-spy on the running gateway for one phase (raw = collapsed stacks)."""

    def begin(seconds: float) -> Callable[[], None]:
        spy = str(Path(sys.executable).with_name("py-spy"))
        proc = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "-r", "200", "-f", "raw", "-o", out,
             "-d", str(int(seconds) + 1)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # attached

        def end() -> None:
            proc.wait(60)

        return end

    return begin


#: (category, frame name prefixes); a sample counts for the innermost frame that matches.
CATEGORIES = (
    ("uvicorn: write the answer (socket send)", ("RequestResponseCycle.send",)),
    ("uvicorn: read and parse the request", ("HttpToolsProtocol.",)),
    (
        "FastAPI: dependencies (key, scope, rate limit, path and query parameters)",
        ("solve_dependencies",),
    ),
    ("endpoint body", ("run_endpoint_function",)),
    ("FastAPI: response model (validate + serialize)", ("serialize_response",)),
    ("Starlette: response object", ("Response.", "JSONResponse.")),
    (
        "routing (matching the path)",
        (
            "_IncludedRouter.matches",
            "APIRouter.matches",
            "_IncludedRouter._match",
            "APIRoute.matches",
            "Route.matches",
        ),
    ),
    ("middleware stack and ASGI glue", ("RequestResponseCycle.run_asgi",)),
)


def profile_breakdown(path: str) -> dict[str, float]:
    """Share of the gateway's samples per stage of a request (see CATEGORIES); the rest is
    the event loop itself, the Kafka stream consumer and timers."""
    counts: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in reversed(stack.split(";")):
            name = next((c for c, prefixes in CATEGORIES if frame.startswith(prefixes)), None)
            if name is not None:
                counts[name] += int(count)
                break
        else:
            counts["event loop, Kafka consumer, other"] += int(count)
    return {k: round(100 * v / total, 1) for k, v in counts.most_common()} if total else {}


def profile_summary(path: str, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Share of samples per function: inclusive (on the stack) and self (the leaf)."""
    import re

    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [
            re.sub(r":\d+\)$", ")", f)
            for f in stack.split(";")
            if not f.startswith(("process ", "thread ("))
        ]
        if not frames:
            continue
        total += n
        leaf[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * k / total, 1)) for f, k in c.most_common(top)]

    return {
        "samples": [("total", total)],
        "inclusive_pct": share(inclusive),
        "self_pct": share(leaf),
    }


# --- main -----------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--ws-worker":
        import uvloop

        port, key, n, compression = sys.argv[2:6]
        uvloop.run(ws_worker(int(port), key, int(n), compression))
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--assets", type=int, default=3000, help="assets with stored readings")
    ap.add_argument("--history-assets", type=int, default=50, help="assets with a day of history")
    ap.add_argument("--alarms", type=int, default=2000)
    ap.add_argument("--concurrency", default="8,32,64", help="latest-read concurrencies")
    ap.add_argument("--seconds", type=float, default=10, help="length of each timed phase")
    ap.add_argument("--rate", default=f"2000,{GOAL_RPS}", help="offered req/s (fixed rate)")
    ap.add_argument("--rate-connections", type=int, default=64)
    ap.add_argument("--db-concurrency", type=int, default=16)
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw")
    ap.add_argument("--ws-clients", type=int, default=100)
    ap.add_argument("--ws-procs", type=int, default=1, help="processes holding the clients")
    ap.add_argument("--ws-rates", default="50,200,500", help="published events/s, per step")
    ap.add_argument("--ws-seconds", type=float, default=10)
    ap.add_argument("--ws-compression", choices=("deflate", "none"), default="deflate")
    ap.add_argument("--skip-http", action="store_true", help="only the WebSocket fan-out")
    ap.add_argument("--skip-fanout", action="store_true", help="only the HTTP reads")
    ap.add_argument("--quick", action="store_true", help="600 assets, 3 s phases")
    ap.add_argument("--py-spy", metavar="OUT", help="profile the gateway in an extra warm phase")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="wait up to S s for an idle machine",
    )
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()
    if args.quick:  # smaller defaults; options given explicitly still apply
        quick = {"assets": 600, "history_assets": 10, "alarms": 500, "seconds": 3}
        quick |= {"ws_seconds": 3, "ws_rates": "50,200", "rate": str(GOAL_RPS)}
        for name, value in quick.items():
            if getattr(args, name) == ap.get_default(name):
                setattr(args, name, value)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.ws_rates = [int(r) for r in args.ws_rates.split(",")]
    args.rate = [float(r) for r in args.rate.split(",")]
    assets = [f"pump-{i:05d}" for i in range(args.assets)]

    quiet = Quiet(args.wait_quiet)
    with benchkit.fresh_stack("api") as stack:
        t = time.perf_counter()
        rows = store_fleet(stack.database_url, assets, 10, args.history_assets, 24, 30)
        store_alarms(stack.database_url, assets, args.alarms)
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE readings")
            conn.execute("VACUUM ANALYZE alarms")
        print(f"stored {rows:,} readings and {args.alarms:,} alarms in "
              f"{time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
        key = benchkit.create_key(stack, "read")
        # The topics exist before the gateway starts, as in a deployment (the stream hub
        # waits for them anyway).
        from pdm_common import topics
        from pdm_common.broker import ensure_topics

        asyncio.run(ensure_topics(stack.bootstrap, topics.all_topics(), partitions=3))
        env = {
            "PDM_LOG_LEVEL": "WARNING",
            # the server offers deflate only when told to; the client asks per --ws-compression
            "PDM_GATEWAY_WS_COMPRESSION": str(args.ws_compression == "deflate").lower(),
        }
        with benchkit.service(stack, "gateway", env) as (gw, port):
            benchkit.wait_for(lambda: ready(port), 90, "the gateway's /ready", gw)
            print(f"gateway ready (pid {gw.pid}, RSS {rss_mib(gw.pid)} MiB); HTTP load "
                  f"({args.client} client) ...", flush=True)  # fmt: skip
            rss_start = rss_mib(gw.pid)
            profile = start_profile(gw.pid, args.py_spy) if args.py_spy else None
            import uvloop

            http: dict[str, object] = {}
            if not args.skip_http:
                http = uvloop.run(
                    http_phases(
                        args, quiet, port, key, assets, lambda: Meter(gw.pid, stack.state), profile
                    )
                )
            rss_after_reads = rss_mib(gw.pid)
            ws: dict[str, object] = {}
            if not args.skip_fanout:
                print(f"WebSocket fan-out ({args.ws_clients} clients) ...", flush=True)
                spy = start_profile(gw.pid, args.py_spy + ".fanout") if args.py_spy else None
                ws = fanout(args, quiet, spy, stack, port, key, assets[:1000], gw.pid)
            rss = {
                "at_start_mib": rss_start,
                "after_reads_mib": rss_after_reads,
                "after_fanout_mib": rss_mib(gw.pid),
                "peak_mib": benchkit.peak_rss_mib(gw.pid),
            }
        log = Path(tempfile.gettempdir()) / "pdm-bench-api-gateway.log"
        shutil.copyfile(stack.state / "gateway.log", log)  # the stack's dir is removed
        print(f"gateway log: {log}", flush=True)

    warm: list[dict] = http.get("latest_warm", [])  # type: ignore[assignment]
    fixed: list[dict] = http.get("latest_fixed_rate", [])  # type: ignore[assignment]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": benchkit.machine(),
        "command": "python bench/api.py " + " ".join(sys.argv[1:]),
        "client": args.client,
        "fetch_max_wait_ms": int(os.environ.get("PDM_KAFKA_FETCH_MAX_WAIT_MS", "20")),
        "waited_for_quiet": quiet.enabled,
        "assets": args.assets,
        "readings_stored": rows,
        "goal": f">= {GOAL_RPS} req/s at p99 <= {GOAL_P99_MS:g} ms (latest reading, warm)",
        "goal_met_closed_loop_at_concurrency": [
            f["concurrency"]
            for f in warm
            if f["req_per_s"] >= GOAL_RPS and f["p99_ms"] <= GOAL_P99_MS
        ],
        "goal_met_at_fixed_rate": any(
            f["offered_per_s"] >= GOAL_RPS
            and f["req_per_s"] >= 0.99 * GOAL_RPS
            and f["p99_ms"] <= GOAL_P99_MS
            for f in fixed
        ),
        **http,
        "fanout": ws,
        "gateway_rss": rss,
    }
    if args.py_spy and not args.skip_http:
        result["profile_breakdown_pct"] = profile_breakdown(args.py_spy)
    if args.py_spy and not args.skip_fanout:
        result["fanout_profile_self_pct"] = profile_summary(args.py_spy + ".fanout", 12)["self_pct"]
    print(json.dumps(result, indent=2))
    if args.py_spy and not args.skip_http:
        summary = profile_summary(args.py_spy)
        print(f"py-spy profile of the gateway ({args.py_spy}), warm c=32, by stage of a request:")
        for stage, pct in result["profile_breakdown_pct"].items():  # type: ignore[attr-defined]
            print(f"  {pct:5.1f} %  {stage}")
        print("  functions (self):")
        for frame, pct in summary["self_pct"]:
            print(f"  {pct:5.1f} %  {frame}")
    previous = benchkit.save("api", result, as_baseline=args.save_baseline)
    if previous:
        print(f"baseline: {benchkit.BASELINES / 'api.json'} ({previous['when']})")
        for now_f, base_f in zip(warm, previous.get("latest_warm", []), strict=False):  # type: ignore[call-overload]
            print(
                f"  warm c={now_f['concurrency']}: now {now_f['req_per_s']:,} req/s p99 "
                f"{now_f['p99_ms']} ms; baseline {base_f['req_per_s']:,} req/s p99 "
                f"{base_f['p99_ms']} ms"
            )
        base_steps = {s["events_per_s"]: s for s in previous.get("fanout", {}).get("steps", [])}  # type: ignore[union-attr]
        for step in ws.get("steps", []):  # type: ignore[attr-defined]
            base = base_steps.get(step["events_per_s"])
            if base:
                print(
                    f"  fan-out {step['events_per_s']} events/s: now "
                    f"{step['frames_per_s_total']:,} frames/s p99 {step['latency']['p99_ms']} ms; "
                    f"baseline {base['frames_per_s_total']:,} frames/s p99 "
                    f"{base['latency']['p99_ms']} ms"
                )
        base_rss = previous.get("gateway_rss", {}).get("peak_mib")  # type: ignore[union-attr]
        print(f"  peak RSS: now {rss['peak_mib']} MiB; baseline {base_rss} MiB")


if __name__ == "__main__":
    main()
