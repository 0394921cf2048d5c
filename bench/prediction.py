"""Prediction service benchmark: request/reply latency through Kafka, batches of 1,000 assets,
and the periodic scoring throughput of one process.

Starts a fresh broker, PostgreSQL and MLflow, trains and registers the AI4I failure
classifier (the `pdm train ai4i` pipeline and defaults; `--quick` trains a smaller one),
stores one snapshot for each of `--assets` milling assets (AI4I rows, as ingest would) and runs one real
prediction process (`python -m pdm_prediction`). A client then measures, from publish to the
last reply message received:

1. single requests, one at a time (features from the stored readings, then inline);
2. batch requests of `--batch` assets (stored, then inline);
3. one periodic round over every asset (the service's own timer): predictions/s, from the
   round being queued to the last prediction stored.

    .venv/bin/python bench/prediction.py
    .venv/bin/python bench/prediction.py --quick --singles 300 --batches 10
    PDM_KAFKA_FETCH_MAX_WAIT_MS=5 .venv/bin/python bench/prediction.py   # see docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

import benchkit
from pdm_common.request_reply import ReplyClient
from pdm_tools.paths import DATA_DIR

REQUESTS = "pdm.prediction.requests.v1"
DATA = DATA_DIR / "ai4i2020" / "ai4i2020.csv"
MODEL = "failure-milling"


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    s = sorted(values)
    return {
        "p50_ms": round(statistics.median(s), 1),
        "p99_ms": round(s[min(len(s) - 1, int(0.99 * len(s)))], 1),
        "max_ms": round(s[-1], 1),
    }


def train(mlflow_uri: str, quick: bool) -> str:
    from pdm_common import registry
    from pdm_ml.training import ai4i

    frame = ai4i.load_ai4i(DATA)
    train_part, test_part = ai4i.split_holdout(frame, 0.2, seed=42)
    config = ai4i.Ai4iConfig(folds=3, mode_strategies=("ovr",)) if quick else ai4i.Ai4iConfig()
    result = ai4i.train_ai4i(train_part, test_part, config)
    version = ai4i.register_ai4i(result, tracking_uri=mlflow_uri, name=MODEL)
    registry.promote_if_better(
        MODEL, version.version, metric="holdout_f1", higher_is_better=True, tracking_uri=mlflow_uri
    )
    return version.version


def ai4i_snapshots(n: int, seed: int) -> list[dict[str, float]]:
    """Real operating points: AI4I rows (3.4 % of them failures), sampled with replacement."""
    import pandas as pd

    from pdm_ml.features import machining

    frame = machining.rename_ai4i(pd.read_csv(DATA)).sample(n, replace=True, random_state=seed)
    return [
        {s: float(row[s]) for s in machining.SENSORS}
        | {"quality_code": float(machining.QUALITY_CODES[row[machining.QUALITY]])}
        for _, row in frame.iterrows()
    ]


def store_fleet(database_url: str, assets: list[str]) -> dict[str, dict]:
    now = datetime.now(UTC)
    values = dict(zip(assets, ai4i_snapshots(len(assets), seed=7), strict=True))
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy("COPY readings (time, asset_id, sensor, value) FROM STDIN") as copy:
            for a, snap in values.items():
                for s, v in snap.items():
                    copy.write_row((now, a, s, v))
        with cur.copy("COPY assets (asset_id, asset_type) FROM STDIN") as copy:
            for a in assets:
                copy.write_row((a, "milling"))
        # the timer waits until the periodic phase resets this
        cur.execute("UPDATE prediction_timer SET last_tick = now()")
    return values


def inline(snap: dict[str, float]) -> dict:
    readings = {k: v for k, v in snap.items() if k != "quality_code"}
    quality = "LMH"[int(snap["quality_code"])]
    return {"readings": readings, "attributes": {"quality": quality}}


async def run_client(
    bootstrap: str, values: dict[str, dict], singles: int, batches: int, batch: int
) -> dict[str, object]:
    assets = list(values)
    out: dict[str, object] = {}
    wait_ms = int(os.environ.get("PDM_KAFKA_FETCH_MAX_WAIT_MS", "20"))
    async with ReplyClient(bootstrap, fetch_max_wait_ms=wait_ms) as client:

        async def call(body: dict, key: str, timeout_s: float = 30) -> float:
            return (await client.call(REQUESTS, body, key=key, timeout_s=timeout_s))[1]

        for i in range(5):  # warm-up: group assignment done, model loaded
            await call({"asset_id": assets[i], "asset_type": "milling"}, assets[i], 120)
        for mode in ("stored", "inline"):
            lat = []
            for i in range(singles):
                a = assets[i % len(assets)]
                body = {"asset_id": a, "asset_type": "milling"}
                if mode == "inline":
                    body |= inline(values[a])
                lat.append(await call(body, a))
            out[f"single_{mode}"] = {"requests": singles} | percentiles(lat)
        for mode in ("stored", "inline"):
            lat = []
            for b in range(batches):
                chunk = [assets[(b * batch + j) % len(assets)] for j in range(batch)]
                requests = [{"asset_id": a, "asset_type": "milling"} for a in chunk]
                if mode == "inline":
                    requests = [r | inline(values[r["asset_id"]]) for r in requests]
                lat.append(await call({"requests": requests}, chunk[0], 60))
            out[f"batch{batch}_{mode}"] = {"batches": batches} | percentiles(lat)
    return out


def periodic_round(database_url: str, n: int, timeout: float = 600) -> dict[str, object]:
    """Let the timer claim a round; time from the claim to the n-th periodic prediction."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE prediction_timer SET last_tick = '-infinity'")
        deadline = time.monotonic() + timeout
        claimed = None
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT CASE WHEN last_tick = '-infinity' THEN NULL ELSE last_tick END "
                "FROM prediction_timer WHERE name = 'periodic'"
            ).fetchone()
            if row and row[0] is not None:
                claimed = row[0]
                break
            time.sleep(0.2)
        if claimed is None:
            raise SystemExit("the periodic round was never claimed")
        done = 0
        while time.monotonic() < deadline:
            done, last = conn.execute(
                "SELECT count(*), max(time) FROM predictions WHERE payload->>'trigger' = 'periodic'"
            ).fetchone()  # type: ignore[misc]
            if done >= n:
                seconds = (last - claimed).total_seconds()
                return {"assets": n, "seconds": round(seconds, 2), "per_s": round(n / seconds)}
            time.sleep(0.5)
    raise SystemExit(f"periodic round: {done}/{n} predictions after {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--assets", type=int, default=5000, help="stored milling assets")
    ap.add_argument("--singles", type=int, default=500, help="single requests per mode")
    ap.add_argument("--batches", type=int, default=20, help="batch requests per mode")
    ap.add_argument("--batch", type=int, default=1000, help="assets per batch request")
    ap.add_argument("--quick", action="store_true", help="train a smaller model, faster")
    ap.add_argument("--py-spy", metavar="OUT", help="profile the service (collapsed stacks)")
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"AI4I data not found at {DATA}")

    from pdm_tools.stack.processes import start_mlflow

    with benchkit.fresh_stack("prediction") as stack:
        mlflow = start_mlflow(stack.state / "mlflow", die_with_parent=True)
        try:
            mlflow_uri = f"http://127.0.0.1:{mlflow.port}"
            print("training and registering the AI4I classifier ...", flush=True)
            version = train(mlflow_uri, args.quick)
            assets = [f"mill-{i:05d}" for i in range(args.assets)]
            values = store_fleet(stack.database_url, assets)
            env = {
                "PDM_LOG_LEVEL": "WARNING",
                "PDM_MLFLOW_TRACKING_URI": mlflow_uri,
                "PDM_PREDICTION_PERIODIC_INTERVAL_S": "3600",
                "PDM_PREDICTION_BATCH_MAX_RECORDS": "500",
            }
            prefix: list[str] = []
            if args.py_spy:
                spy = str(Path(sys.executable).with_name("py-spy"))
                prefix = [spy, "record", "-r", "200", "-f", "raw", "-o", args.py_spy, "--"]
            with benchkit.service(stack, "prediction", env, prefix) as (proc, _port):
                print("measuring request/reply ...", flush=True)
                figures = asyncio.run(
                    run_client(stack.bootstrap, values, args.singles, args.batches, args.batch)
                )
                print("measuring a periodic round ...", flush=True)
                figures["periodic"] = periodic_round(stack.database_url, args.assets)
                figures["peak_rss_mib"] = benchkit.peak_rss_mib(proc.pid)
        finally:
            mlflow.stop()

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": benchkit.machine(),
        "command": "python bench/prediction.py " + " ".join(sys.argv[1:]),
        "fetch_max_wait_ms": int(os.environ.get("PDM_KAFKA_FETCH_MAX_WAIT_MS", "20")),
        "model": f"{MODEL} v{version}" + (" (quick)" if args.quick else ""),
        **figures,
    }
    print(json.dumps(result, indent=2))
    previous = benchkit.save("prediction", result, as_baseline=args.save_baseline)
    if previous:
        print("baseline:", Path(benchkit.BASELINES / "prediction.json"))
        for key in ("single_stored", "single_inline", f"batch{args.batch}_stored", "periodic"):
            print(f"  {key}: now {result.get(key)}  baseline {previous.get(key)}")


if __name__ == "__main__":
    main()
