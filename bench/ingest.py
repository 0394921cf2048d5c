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
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

import benchkit

SENSORS = ("temperature", "vibration", "pressure", "power", "speed", "torque", "current", "flow")
TOPIC = "pdm.readings.v1"


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

    prefix: list[str] = []
    if args.py_spy:
        spy = str(Path(sys.executable).with_name("py-spy"))
        prefix = [spy, "record", "-r", "200", "-f", "raw", "-o", args.py_spy, "--"]
    env = {
        "PDM_KAFKA_PARTITIONS": str(args.partitions),
        "PDM_INGEST_BATCH_MAX_RECORDS": str(args.batch),
        "PDM_LOG_LEVEL": "WARNING",
    }
    with (
        benchkit.fresh_stack("ingest") as stack,
        benchkit.service(stack, "ingest", env, prefix) as (ingest, port),
    ):
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
        while benchkit.metric(benchkit.scrape(port), "pdm_rows_written_total{") < 1:
            if time.monotonic() > deadline or ingest.poll() is not None:
                raise SystemExit(f"ingest did not start; see {stack.state / 'ingest.log'}")
            asyncio.run(benchkit.send_all(stack.bootstrap, TOPIC, warm))
            time.sleep(1)
        base_rows = benchkit.metric(benchkit.scrape(port), "pdm_rows_written_total{")

        print(
            f"generating {args.values:,} values ({args.values // args.sensors:,} messages)...",
            flush=True,
        )
        msgs = messages(args.values, args.assets, args.sensors)
        expected = len(msgs) * args.sensors
        cpu_before = benchkit.cpu_seconds(ingest.pid)
        pg_cpu_before = benchkit.postgres_cpu_seconds()
        broker_cpu_before = benchkit.cpu_seconds(stack.broker_pid)
        bench_cpu_before = time.process_time()
        t0 = time.perf_counter()
        publish_s = asyncio.run(benchkit.send_all(stack.bootstrap, TOPIC, msgs))
        print(f"published in {publish_s:.2f}s ({len(msgs) / publish_s:,.0f} msg/s)", flush=True)
        lag_samples: list[tuple[float, float, float]] = []
        while True:
            text = benchkit.scrape(port)
            rows = benchkit.metric(text, "pdm_rows_written_total{") - base_rows
            now = time.perf_counter() - t0
            lag_samples.append((round(now, 2), benchkit.metric(text, "pdm_consumer_lag{"), rows))
            if rows >= expected:
                break
            if now > args.timeout or ingest.poll() is not None:
                raise SystemExit(
                    f"stopped at {rows:,.0f}/{expected:,} rows; log: {stack.state / 'ingest.log'}"
                )
            time.sleep(0.25)
        elapsed = time.perf_counter() - t0
        with psycopg.connect(stack.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM readings WHERE asset_id LIKE 'bench-%'"
            ).fetchone()
        final = benchkit.scrape(port)
        labels = '{service="ingest",topic="pdm.readings.v1"}'
        batches = benchkit.metric(final, f"pdm_batch_size_count{labels}")
        batch_msgs = benchkit.metric(final, f"pdm_batch_size_sum{labels}")
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": benchkit.machine(),
            "command": "python bench/ingest.py " + " ".join(sys.argv[1:]),
            "values": expected,
            "messages": len(msgs),
            "stored": row[0] if row else 0,
            "publish_s": round(publish_s, 2),
            "end_to_end_s": round(elapsed, 2),
            "values_per_s": round(expected / elapsed),
            "messages_per_s": round(len(msgs) / elapsed),
            "peak_rss_mib": benchkit.peak_rss_mib(ingest.pid),
            "ingest_cpu_s": round(benchkit.cpu_seconds(ingest.pid) - cpu_before, 2),
            "postgres_cpu_s": round(benchkit.postgres_cpu_seconds() - pg_cpu_before, 2),
            "broker_cpu_s": round(benchkit.cpu_seconds(stack.broker_pid) - broker_cpu_before, 2),
            "bench_publisher_cpu_s": round(time.process_time() - bench_cpu_before, 2),
            "batches": int(batches),
            "mean_batch_messages": round(batch_msgs / max(batches, 1)),
            "max_lag_messages": max(s[1] for s in lag_samples),
            "lag_over_time": lag_samples[:: max(1, len(lag_samples) // 20)],
        }

    assert result["stored"] == expected, f"stored {result['stored']} != {expected}"
    print(json.dumps({k: v for k, v in result.items() if k != "lag_over_time"}, indent=2))
    print("lag over time (s, messages behind, rows stored):")
    for t, lag, rows in result["lag_over_time"]:  # type: ignore[attr-defined]
        print(f"  {t:7.2f}s  lag {lag:>9,.0f}  rows {rows:>11,.0f}")
    base = benchkit.save("ingest", result, as_baseline=args.save_baseline)
    if base:
        ratio = result["values_per_s"] / base["values_per_s"]  # type: ignore[operator]
        print(
            f"baseline {base['values_per_s']:,} values/s ({base['when']}): this run is {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
