"""Anomaly service benchmark: readings/s through one process, and reading-to-alarm latency.

Starts a fresh broker and PostgreSQL, migrates, and runs one real anomaly process
(`python -m pdm_anomaly`), fed directly on `pdm.readings.validated.v1` (as ingest publishes
it), so the figures are the anomaly service's own.

1. Throughput: N readings (validated events of 50 snapshots x 8 sensors of one asset each)
   published at once; time from first publish until the service has handled every event.
2. Latency at a steady load (default 10,000 readings/s for 20 s: 1,000 events/s of one
   10-sensor snapshot): every 0.1 s one reading is a spike on a fresh (asset, sensor); the
   time from its publish to the `alarm.opened` event on `pdm.anomalies.v1` is recorded.

    .venv/bin/python bench/anomaly.py
    .venv/bin/python bench/anomaly.py --readings 400000 --rate 10000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import benchkit

TOPIC = "pdm.readings.validated.v1"


def event(asset: str, snaps: list[tuple[datetime, dict[str, float]]]) -> bytes:
    return json.dumps(
        {
            "event_type": "readings.validated",
            "source": "bench",
            "asset_id": asset,
            "asset_type": "bench",
            "snapshots": [{"ts": ts.isoformat(), "readings": r} for ts, r in snaps],
        }
    ).encode()


def handled(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("pdm_messages_total{") and f'topic="{TOPIC}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def send_all(bootstrap: str, msgs: list[tuple[bytes, bytes]]) -> None:
    await benchkit.send_all(bootstrap, TOPIC, msgs)


def wait_handled(port: int, target: float, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while handled(benchkit.scrape(port)) < target:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"anomaly handled {handled(benchkit.scrape(port))} of {target} events")
        time.sleep(0.1)


async def latency_run(
    bootstrap: str, rate: int, seconds: float, sensors: int, assets: int, t0: datetime
) -> tuple[list[float], int]:
    """Steady load with spikes; returns publish->alarm latencies (ms) and spikes sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    consumer = AIOKafkaConsumer(
        "pdm.anomalies.v1",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,  # a client that wants alarms at once; tansu holds fetches that long
    )
    await producer.start()
    await consumer.start()
    sent_at: dict[tuple[str, str], float] = {}
    latencies: list[float] = []

    async def collect() -> None:
        async for record in consumer:
            e = json.loads(record.value)
            if e["event_type"] != "alarm.opened":
                continue
            sensor = e["condition"].split(":")[0]
            key = (e["asset_id"], sensor)
            if key in sent_at:
                latencies.append((time.perf_counter() - sent_at.pop(key)) * 1000)

    collector = asyncio.create_task(collect())
    rng = random.Random(7)
    events_per_s = rate // sensors
    spikes = [(f"bench-{a:04d}", f"s{s}") for a in range(assets) for s in range(sensors)]
    rng.shuffle(spikes)
    ts = t0
    start = time.perf_counter()
    tick = 0
    n_spikes = 0
    while time.perf_counter() - start < seconds:
        slot_start = time.perf_counter()
        batch = []
        for i in range(events_per_s // 10):  # 0.1 s worth
            asset = f"bench-{(tick * 97 + i) % assets:04d}"
            ts = ts + timedelta(milliseconds=1)
            readings = {f"s{s}": 50.0 + rng.gauss(0, 1) for s in range(sensors)}
            batch.append((asset, ts, readings))
        spike_asset, spike_sensor = spikes[n_spikes % len(spikes)]
        ts = ts + timedelta(milliseconds=1)
        spike = {f"s{s}": 50.0 + rng.gauss(0, 1) for s in range(sensors)}
        spike[spike_sensor] = 50.0 + 40.0
        futures = [
            await producer.send(TOPIC, event(a, [(t, r)]), key=a.encode()) for a, t, r in batch
        ]
        sent_at[(spike_asset, spike_sensor)] = time.perf_counter()
        futures.append(
            await producer.send(TOPIC, event(spike_asset, [(ts, spike)]), key=spike_asset.encode())
        )
        n_spikes += 1
        await asyncio.gather(*futures)
        tick += 1
        await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - slot_start)))
    await asyncio.sleep(3)
    collector.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await collector
    await consumer.stop()
    await producer.stop()
    return latencies, n_spikes


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--readings", type=int, default=400_000, help="readings for the throughput run")
    ap.add_argument("--rate", type=int, default=10_000, help="readings/s in the latency run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()

    env = {
        "PDM_LOG_LEVEL": "WARNING",
        "PDM_ANOMALY_MULTIVARIATE": "false",
        "PDM_ANOMALY_WARMUP_READINGS": "0",
    }
    with (
        benchkit.fresh_stack("anomaly") as stack,
        benchkit.service(stack, "anomaly", env) as (
            proc,
            port,
        ),
    ):
        bootstrap = stack.bootstrap
        # warm-up: one event through, so the group join is not timed
        t0 = datetime.now(UTC) - timedelta(days=2)
        asyncio.run(send_all(bootstrap, [(b"warm", event("warm", [(t0, {"x": 1.0})]))]))
        wait_handled(port, 1, 120, proc)

        # 1. throughput
        rng = random.Random(1)
        per_event, sensors = 50, 8
        n_events = args.readings // (per_event * sensors)
        msgs = []
        for e in range(n_events):
            asset = f"tp-{e % args.assets:04d}"
            base = t0 + timedelta(seconds=(e // args.assets) * per_event)
            snaps = [
                (
                    base + timedelta(seconds=i),
                    {f"s{s}": 20 + rng.gauss(0, 1) for s in range(sensors)},
                )
                for i in range(per_event)
            ]
            msgs.append((asset.encode(), event(asset, snaps)))
        before = handled(benchkit.scrape(port))
        start = time.perf_counter()
        asyncio.run(send_all(bootstrap, msgs))
        wait_handled(port, before + n_events, 600, proc)
        elapsed = time.perf_counter() - start
        readings = n_events * per_event * sensors

        # 2. latency at a steady rate (detectors warmed first: 600 healthy snapshots per asset, past the univariate warm-up of 512)
        t1 = t0 + timedelta(hours=12)
        warm = [
            (
                f"bench-{a:04d}".encode(),
                event(
                    f"bench-{a:04d}",
                    [
                        (
                            t1 + timedelta(seconds=i),
                            {f"s{s}": 50 + rng.gauss(0, 1) for s in range(10)},
                        )
                        for i in range(600)
                    ],
                ),
            )
            for a in range(args.assets)
        ]
        before = handled(benchkit.scrape(port))
        asyncio.run(send_all(bootstrap, warm))
        wait_handled(port, before + len(warm), 300, proc)
        latencies, spikes = asyncio.run(
            latency_run(
                bootstrap, args.rate, args.seconds, 10, args.assets, t1 + timedelta(hours=1)
            )
        )
        lat = sorted(latencies)
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": benchkit.machine(),
            "command": "python bench/anomaly.py " + " ".join(sys.argv[1:]),
            "throughput_readings": readings,
            "throughput_s": round(elapsed, 2),
            "readings_per_s": round(readings / elapsed),
            "latency_rate_readings_per_s": args.rate,
            "spikes": spikes,
            "alarms_seen": len(lat),
            "latency_p50_ms": round(statistics.median(lat), 1) if lat else None,
            "latency_p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1)
            if lat
            else None,
            "latency_max_ms": round(lat[-1], 1) if lat else None,
            "peak_rss_mib": benchkit.peak_rss_mib(proc.pid),
        }

    print(json.dumps(result, indent=2))
    base = benchkit.save("anomaly", result, as_baseline=args.save_baseline)
    if base:
        print(
            f"baseline ({base['when']}): {base['readings_per_s']:,} readings/s, "
            f"p99 {base['latency_p99_ms']} ms"
        )


if __name__ == "__main__":
    main()
