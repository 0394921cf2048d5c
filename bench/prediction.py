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
   round being queued to the last prediction stored;
4. against `mlflow models serve` (skip with `--no-mlflow-serve`): one API gateway process and
   `mlflow models serve` of the same registered model (`models:/failure-milling@champion`),
   `--serve-requests` single predictions each over one keep-alive `http.client` connection
   each, alternating (platform, MLflow, platform, ...), for the same AI4I row each time:
   `POST /v1/predict` with the inline readings, `POST /invocations` with the row's features
   (`dataframe_split`, the model's signature).

    .venv/bin/python bench/prediction.py
    .venv/bin/python bench/prediction.py --quick --singles 300 --batches 10
    .venv/bin/python bench/prediction.py --quick --singles 20 --batches 2 --serve-requests 100
    PDM_KAFKA_FETCH_MAX_WAIT_MS=5 .venv/bin/python bench/prediction.py   # see docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


def made_split(answer: bytes, sent: float, ms: float) -> tuple[float, float]:
    """A single answer's round trip split at its `occurred_at` (when the service assembled
    the prediction, after scoring): (sent -> made, made -> answer received), in ms. Both
    clocks are this machine's wall clock."""
    made = datetime.fromisoformat(json.loads(answer)["occurred_at"]).timestamp()
    to_made = (made - sent) * 1000
    return to_made, ms - to_made


async def run_client(
    bootstrap: str, values: dict[str, dict], singles: int, batches: int, batch: int
) -> dict[str, object]:
    assets = list(values)
    out: dict[str, object] = {}
    wait_ms = int(os.environ.get("PDM_KAFKA_FETCH_MAX_WAIT_MS", "20"))
    async with ReplyClient(bootstrap, fetch_max_wait_ms=wait_ms) as client:
        split: dict[str, list[float]] = {"to_made_ms": [], "made_to_reply_ms": []}

        async def call(body: dict, key: str, timeout_s: float = 30) -> float:
            sent = time.time()
            parts, ms = await client.call(REQUESTS, body, key=key, timeout_s=timeout_s)
            if len(parts) == 1:  # a single answer: split at the moment the prediction was made
                to_made, made_to_reply = made_split(parts[0], sent, ms)
                split["to_made_ms"].append(to_made)
                split["made_to_reply_ms"].append(made_to_reply)
            return ms

        for i in range(5):  # warm-up: group assignment done, model loaded
            await call({"asset_id": assets[i], "asset_type": "milling"}, assets[i], 120)
        for v in split.values():
            v.clear()
        for mode in ("stored", "inline"):
            lat = []
            for v in split.values():
                v.clear()
            for i in range(singles):
                a = assets[i % len(assets)]
                body = {"asset_id": a, "asset_type": "milling"}
                if mode == "inline":
                    body |= inline(values[a])
                lat.append(await call(body, a))
            out[f"single_{mode}"] = (
                {"requests": singles}
                | percentiles(lat)
                | {k: percentiles(v) for k, v in split.items()}
            )
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


def answers(url: str) -> bool:
    """True once `url` answers 200 (a readiness or ping route)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def gateway_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            return bool(json.loads(r.read())["ready"])
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def mlflow_serve(
    stack: benchkit.Stack, mlflow_uri: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`mlflow models serve` of the champion (one uvicorn worker, this venv), on a free port."""
    from pdm_tools.stack.processes import free_port

    port = free_port()
    log = (stack.state / "mlflow-serve.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "models", "serve",
         "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        # it execs `uvicorn` from PATH: this venv's
        env=dict(os.environ)
        | {
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        stdout=log,
        stderr=log,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (mlflow serve runs uvicorn as a child; py-spy its target)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def tree_rss_mib(pid: int) -> float:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += benchkit.cpu_seconds(p)
    return total


class KeepAlive:
    """One keep-alive HTTP/1.1 connection (`http.client`): POST JSON, time the answer."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json"} | headers
        self.client_cpu_s = 0.0

    def post(self, path: str, body: bytes) -> tuple[float, int, bytes]:
        """(ms from sending to the whole answer read, status, body)."""
        cpu = time.thread_time()
        started = time.perf_counter()
        self.conn.request("POST", path, body, self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        ms = (time.perf_counter() - started) * 1000
        self.client_cpu_s += time.thread_time() - cpu
        return ms, resp.status, data

    def close(self) -> None:
        self.conn.close()


def serve_requests(
    gateway_port: int, serve_port: int, key: str, values: dict[str, dict], n: int
) -> dict[str, object]:
    """`n` single predictions each, alternating platform and MLflow, same row each pair."""
    from pdm_ml.features import machining

    assets = list(values)
    platform = KeepAlive(gateway_port, {"Authorization": f"Bearer {key}"})
    mlflow = KeepAlive(serve_port, {})

    def bodies(i: int) -> tuple[bytes, bytes]:
        a = assets[i % len(assets)]
        snap = inline(values[a])
        ours = {"asset_id": a, "asset_type": "milling"} | snap
        row = machining.features_row(snap["readings"] | snap["attributes"])
        theirs = {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
        return json.dumps(ours).encode(), json.dumps(theirs).encode()

    def check(what: str, status: int, data: bytes) -> None:
        if status != 200:
            raise SystemExit(f"{what} answered {status}: {data[:500]!r}")

    try:
        for i in range(20):  # warm-up: connections open, both models loaded and touched
            ours, theirs = bodies(i)
            check("POST /v1/predict", *platform.post("/v1/predict", ours)[1:])
            check("POST /invocations", *mlflow.post("/invocations", theirs)[1:])
        platform.client_cpu_s = mlflow.client_cpu_s = 0.0
        lat: dict[str, list[float]] = {"platform": [], "mlflow": []}
        split: dict[str, list[float]] = {"to_made_ms": [], "made_to_reply_ms": []}
        size: dict[str, int] = {}
        example: dict[str, object] = {}
        for i in range(n):
            ours, theirs = bodies(i)
            for side, conn, path, body in (
                ("platform", platform, "/v1/predict", ours),
                ("mlflow", mlflow, "/invocations", theirs),
            ):
                sent = time.time()
                ms, status, data = conn.post(path, body)
                check(f"POST {path}", status, data)
                if side == "platform":
                    to_made, made_to_reply = made_split(data, sent, ms)
                    split["to_made_ms"].append(to_made)
                    split["made_to_reply_ms"].append(made_to_reply)
                lat[side].append(ms)
                size[side] = len(data)
                if i == 0:
                    example[side] = {"request": json.loads(body), "answer": json.loads(data)}
    finally:
        platform.close()
        mlflow.close()
    ours_p, theirs_p = percentiles(lat["platform"]), percentiles(lat["mlflow"])
    ratio = {
        k.replace("_ms", ""): round(ours_p[k] / theirs_p[k], 2)  # type: ignore[operator]
        for k in ("p50_ms", "p99_ms", "max_ms")
    }
    return {
        "requests": n,
        "client": "http.client, one keep-alive connection per side, alternating",
        "platform": ours_p
        | {
            "answer_bytes": size["platform"],
            "client_cpu_us": round(platform.client_cpu_s / n * 1e6),
        }
        | {k: percentiles(v) for k, v in split.items()},
        "mlflow_serve": theirs_p
        | {"answer_bytes": size["mlflow"], "client_cpu_us": round(mlflow.client_cpu_s / n * 1e6)},
        "ratio_platform_to_mlflow": ratio,
        "example": example,
    }


def cpu_ticks() -> tuple[float, float]:
    """(busy, total) seconds of every core since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def py_spy(out: str | None) -> list[str]:
    """The command prefix that profiles a service into `out` (raw collapsed stacks)."""
    if not out:
        return []
    spy = Path(sys.executable).with_name("py-spy")  # the venv's, else one on PATH
    found = str(spy) if spy.is_file() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy not found (next to this Python or on PATH)")
    return [found, "record", "-r", "200", "-f", "raw", "-o", out, "--"]


def against_mlflow_serve(
    stack: benchkit.Stack,
    mlflow_uri: str,
    values: dict[str, dict],
    n: int,
    profile: str | None = None,
) -> dict[str, object]:
    """One gateway process and `mlflow models serve` of the champion, side by side."""
    key = benchkit.create_key(stack, "admin")
    env = {"PDM_LOG_LEVEL": "WARNING", "PDM_MLFLOW_TRACKING_URI": mlflow_uri}
    with (
        benchkit.service(stack, "gateway", env, py_spy(profile)) as (gw, gw_port),
        mlflow_serve(stack, mlflow_uri) as (serve, serve_port),
    ):
        print("starting the gateway and `mlflow models serve` ...", flush=True)
        benchkit.wait_for(lambda: gateway_ready(gw_port), 120, "the gateway's /ready", gw)
        ping = f"http://127.0.0.1:{serve_port}/ping"
        try:
            benchkit.wait_for(lambda: answers(ping), 180, "mlflow models serve /ping", serve)
        except SystemExit:
            print((stack.state / "mlflow-serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        print(f"measuring {n} alternating single requests against mlflow serve ...", flush=True)
        load_before = os.getloadavg()
        busy, started = cpu_ticks(), time.monotonic()
        cpu = {"gateway": tree_cpu_seconds(gw.pid), "mlflow": tree_cpu_seconds(serve.pid)}
        out = serve_requests(gw_port, serve_port, key, values, n)
        seconds = time.monotonic() - started
        out["load_average_1m"] = {"before": load_before[0], "after": os.getloadavg()[0]}
        # the whole machine's busy cores during the phase (this stack's and other jobs')
        out["machine_busy_cores"] = round((cpu_ticks()[0] - busy[0]) / seconds, 2)
        out["cpu_ms_per_request"] = {
            "gateway": round((tree_cpu_seconds(gw.pid) - cpu["gateway"]) / n * 1000, 2),
            "mlflow_serve": round((tree_cpu_seconds(serve.pid) - cpu["mlflow"]) / n * 1000, 2),
        }
        out["rss_mib"] = {"gateway": tree_rss_mib(gw.pid), "mlflow_serve": tree_rss_mib(serve.pid)}
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
    ap.add_argument(
        "--py-spy-gateway", metavar="OUT", help="profile the gateway of the mlflow-serve phase"
    )
    ap.add_argument(
        "--no-mlflow-serve", action="store_true", help="skip the `mlflow models serve` phase"
    )
    ap.add_argument(
        "--serve-requests", type=int, default=300, help="single requests per side, that phase"
    )
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"AI4I data not found at {DATA}")

    from pdm_tools.stack.processes import start_mlflow

    load_start = list(os.getloadavg())

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
            with benchkit.service(stack, "prediction", env, py_spy(args.py_spy)) as (proc, _port):
                print("measuring request/reply ...", flush=True)
                figures = asyncio.run(
                    run_client(stack.bootstrap, values, args.singles, args.batches, args.batch)
                )
                print("measuring a periodic round ...", flush=True)
                figures["periodic"] = periodic_round(stack.database_url, args.assets)
                figures["peak_rss_mib"] = benchkit.peak_rss_mib(proc.pid)
                if not args.no_mlflow_serve:
                    figures["against_mlflow_serve"] = against_mlflow_serve(
                        stack, mlflow_uri, values, args.serve_requests, args.py_spy_gateway
                    )
        finally:
            mlflow.stop()

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": {"before": load_start, "after": list(os.getloadavg())},
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
    serve = result.get("against_mlflow_serve")
    if isinstance(serve, dict):
        print("platform vs mlflow models serve (ms):", {
            k: serve[k] for k in ("platform", "mlflow_serve", "ratio_platform_to_mlflow")
        })  # fmt: skip


if __name__ == "__main__":
    main()
