"""Ingest benchmark: end-to-end throughput, consumer lag over time, peak memory.

Starts its own tansu broker and embedded PostgreSQL (fresh, in a temp dir), migrates, starts
one real ingest process (`python -m pdm_ingest`), then publishes N sensor values in 8-sensor
snapshots as a gateway would (one JSON message per snapshot, keyed by asset). It measures
from the first publish to the moment the last row is committed (the service's
`pdm_rows_written_total` counter, read from `/metrics`, confirmed by `count(*)`), samples the
consumer lag every half second, and reads the ingest process's peak RSS (VmHWM) and CPU time.

    .venv/bin/python bench/ingest.py                  # 1,000,000 values
    .venv/bin/python bench/ingest.py --values 200000 --assets 50
    .venv/bin/python bench/ingest.py --save-baseline  # record this run as the baseline

Results go to bench/results/ingest-<time>.json and are compared with bench/baseline/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "bench" / "baseline" / "ingest.json"
RESULTS = REPO / "bench" / "results"
SENSORS = ("temperature", "vibration", "pressure", "power", "speed", "torque", "current", "flow")


def messages(values: int, assets: int, sensors: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: `values / sensors` snapshots round-robin over `assets`."""
    n = values // sensors
    start = datetime.now(UTC) - timedelta(hours=2)
    out = []
    for i in range(n):
        asset = f"bench-{i % assets:05d}"
        ts = (start + timedelta(milliseconds=10 * (i // assets))).isoformat()
        readings = {
            SENSORS[j % len(SENSORS)] + ("" if j < len(SENSORS) else str(j)): 20.0
            + (i % 97) * 0.1
            + j
            for j in range(sensors)
        }
        body = json.dumps({"asset_id": asset, "ts": ts, "readings": readings}).encode()
        out.append((asset.encode(), body))
    return out


async def publish(bootstrap: str, msgs: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    t0 = time.perf_counter()
    futures = [await producer.send("pdm.readings.v1", v, key=k) for k, v in msgs]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - t0
    await producer.stop()
    return elapsed


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


def proc_status(pid: int) -> dict[str, float]:
    """Peak RSS (MiB) and CPU seconds of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return {"peak_rss_mib": round(hwm, 1), "cpu_s": round(cpu, 2)}


def postgres_cpu(data_dir_marker: str) -> float:
    """CPU seconds of every postgres process of this benchmark's cluster."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"postgres" not in cmd:
                continue
            # children of the postmaster have short cmdlines; include all postgres processes
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return total


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--values", type=int, default=1_000_000, help="sensor values to ingest")
    ap.add_argument("--sensors", type=int, default=8, help="sensors per snapshot")
    ap.add_argument("--assets", type=int, default=100, help="distinct assets")
    ap.add_argument("--batch", type=int, default=5000, help="PDM_INGEST_BATCH_MAX_RECORDS")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--save-baseline", action="store_true")
    ap.add_argument("--py-spy", metavar="OUT", help="profile ingest with py-spy (collapsed stacks)")
    args = ap.parse_args()

    sys.path[:0] = [str(REPO / "libs/common"), str(REPO / "services/ingest")]
    from pdm_common.stack.processes import EmbeddedPostgres, free_port, start_broker

    state = Path(tempfile.mkdtemp(prefix="pdm-bench-"))
    state.chmod(0o755)
    broker = start_broker(state, die_with_parent=True)
    bootstrap = f"127.0.0.1:{broker.port}"
    pg = EmbeddedPostgres(state / "postgres", free_port())
    pg.start()
    ingest = None
    try:
        env = os.environ | {
            "PDM_KAFKA_BOOTSTRAP": bootstrap,
            "PDM_DATABASE_URL": pg.url,
            "PDM_KAFKA_PARTITIONS": str(args.partitions),
            "PDM_INGEST_BATCH_MAX_RECORDS": str(args.batch),
            "PDM_LOG_LEVEL": "WARNING",
        }
        subprocess.run(
            [sys.executable, "-m", "pdm_common.cli", "migrate"],
            env=env,
            check=True,
            capture_output=True,
        )
        port = free_port()
        log = (state / "ingest.log").open("wb")
        cmd = [sys.executable, "-m", "pdm_ingest"]
        if args.py_spy:
            spy = str(Path(sys.executable).with_name("py-spy"))
            cmd = [spy, "record", "-r", "200", "-f", "raw", "-o", args.py_spy, "--", *cmd]
        ingest = subprocess.Popen(
            cmd,
            env=env | {"PDM_INGEST_HTTP_PORT": str(port)},
            stdout=log,
            stderr=log,
            cwd=REPO,
            start_new_session=True,
        )
        # Warm-up: one message through, so the group join (seconds on tansu) is not timed.
        warm = [
            (
                b"warm",
                json.dumps(
                    {
                        "asset_id": "warm",
                        "ts": datetime.now(UTC).isoformat(),
                        "readings": {"x": 1.0},
                    }
                ).encode(),
            )
        ]
        deadline = time.monotonic() + 90
        while (
            "pdm_rows_written_total" not in scrape(port)
            or metric(scrape(port), "pdm_rows_written_total{") < 1
        ):
            if time.monotonic() > deadline:
                raise SystemExit("ingest did not start; see " + str(state / "ingest.log"))
            asyncio.run(publish(bootstrap, warm))
            time.sleep(1)
        base_rows = metric(scrape(port), "pdm_rows_written_total{")

        print(
            f"generating {args.values:,} values ({args.values // args.sensors:,} messages)...",
            flush=True,
        )
        msgs = messages(args.values, args.assets, args.sensors)
        expected = len(msgs) * args.sensors
        cpu_before = proc_status(ingest.pid)["cpu_s"]
        pg_cpu_before = postgres_cpu(str(state))
        broker_cpu_before = proc_status(broker.pid)["cpu_s"]
        bench_cpu_before = time.process_time()
        t0 = time.perf_counter()
        publish_s = asyncio.run(publish(bootstrap, msgs))
        print(f"published in {publish_s:.2f}s ({len(msgs) / publish_s:,.0f} msg/s)", flush=True)
        lag_samples: list[tuple[float, float, float]] = []
        while True:
            text = scrape(port)
            rows = metric(text, "pdm_rows_written_total{") - base_rows
            lag = metric(text, "pdm_consumer_lag{")
            now = time.perf_counter() - t0
            lag_samples.append((round(now, 2), lag, rows))
            if rows >= expected:
                break
            if now > args.timeout or ingest.poll() is not None:
                raise SystemExit(
                    f"stopped at {rows:,.0f}/{expected:,} rows; log: {state / 'ingest.log'}"
                )
            time.sleep(0.25)
        elapsed = time.perf_counter() - t0
        with psycopg.connect(pg.url) as conn:
            stored = conn.execute(
                "SELECT count(*) FROM readings WHERE asset_id LIKE 'bench-%'"
            ).fetchone()[0]  # type: ignore[index]
        usage = proc_status(ingest.pid)
        final = scrape(port)
        batches = metric(final, 'pdm_batch_size_count{service="ingest",topic="pdm.readings.v1"}')
        batch_msgs = metric(final, 'pdm_batch_size_sum{service="ingest",topic="pdm.readings.v1"}')
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "command": "python bench/ingest.py " + " ".join(sys.argv[1:]),
            "values": expected,
            "messages": len(msgs),
            "stored": stored,
            "publish_s": round(publish_s, 2),
            "end_to_end_s": round(elapsed, 2),
            "values_per_s": round(expected / elapsed),
            "messages_per_s": round(len(msgs) / elapsed),
            "peak_rss_mib": usage["peak_rss_mib"],
            "ingest_cpu_s": round(usage["cpu_s"] - cpu_before, 2),
            "postgres_cpu_s": round(postgres_cpu(str(state)) - pg_cpu_before, 2),
            "broker_cpu_s": round(proc_status(broker.pid)["cpu_s"] - broker_cpu_before, 2),
            "bench_publisher_cpu_s": round(time.process_time() - bench_cpu_before, 2),
            "batches": int(batches),
            "mean_batch_messages": round(batch_msgs / max(batches, 1)),
            "max_lag_messages": max(s[1] for s in lag_samples),
            "lag_over_time": lag_samples[:: max(1, len(lag_samples) // 20)],
        }
    finally:
        if ingest is not None:
            ingest.send_signal(signal.SIGINT)  # graceful for uvicorn; py-spy writes its profile
            try:
                ingest.wait(30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(ingest.pid, signal.SIGKILL)  # py-spy's child too
        pg.destroy()
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)

    assert result["stored"] == expected, f"stored {result['stored']} != {expected}"
    print(json.dumps({k: v for k, v in result.items() if k != "lag_over_time"}, indent=2))
    print("lag over time (s, messages behind, rows stored):")
    for t, lag, rows in result["lag_over_time"]:
        print(f"  {t:7.2f}s  lag {lag:>9,.0f}  rows {rows:>11,.0f}")
    if BASELINE.exists():
        base = json.loads(BASELINE.read_text())
        ratio = result["values_per_s"] / base["values_per_s"]
        print(
            f"baseline {base['values_per_s']:,} values/s ({base['when']}): this run is {ratio:.2f}x"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest-{result['when'].replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2))
    if args.save_baseline:
        BASELINE.parent.mkdir(parents=True, exist_ok=True)
        BASELINE.write_text(json.dumps(result, indent=2))
        print(f"saved as baseline: {BASELINE}")


if __name__ == "__main__":
    main()
