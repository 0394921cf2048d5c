"""Alarms as an operator lives them: the simulated fleet replayed through the anomaly
service's decision code (`pdm_tools.alarm_replay`), every alarm scored against ground truth.

Two suites, run in parallel processes:

* healthy: the default nine-machine fleet, nothing injected, every scenario in turn (a change
  every few hours) and two restarts of the anomaly service: false alarms per machine-day (per
  asset type, detector and condition) and alarm floods (alarms per 10 minutes);
* failures: every failure mode each machine type can suffer, at severities high and critical,
  one per machine per run: the share alarmed before the failure and the lead time, as a
  fraction of the ramp, per mode.

The same replay with the detector the service ran before (a level detector for every sensor,
no context handling) is the baseline, printed side by side.

    .venv/bin/python bench/alarms.py                 # 24 h healthy + the failure runs
    .venv/bin/python bench/alarms.py --quick         # 8 h healthy, critical failures only
    .venv/bin/python bench/alarms.py --save-baseline
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import benchkit
from pdm_ml.simulation.machines import ALLOWED_MODES, asset_id_for
from pdm_tools import alarm_replay as replay

SCENARIO_ORDER = ("high_load", "precision", "cold_environment", "high_speed", "normal")
#: ISA-18.2 / EEMUA 191 average alarm rates per operator console.
ISA_RATES = "ISA-18.2: <= 6 alarms/h (1 per 10 min) manageable, > 10 per 10 min is a flood"


def healthy_run(hours: float, seed: int = 0) -> replay.Run:
    every = hours / (len(SCENARIO_ORDER) + 1)
    scenarios = tuple((every * (i + 1) * 3600, s) for i, s in enumerate(SCENARIO_ORDER))
    return replay.Run(
        hours=hours,
        seed=seed,
        scenarios=scenarios,
        restarts=(hours * 0.3 * 3600, hours * 0.65 * 3600),
    )


def upper_rate(events: int, exposure: float, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a Poisson rate (events per unit of exposure)."""
    from scipy.stats import chi2

    return float(chi2.ppf(confidence, 2 * (events + 1)) / 2.0 / exposure)


def failure_runs(severities: Sequence[str], inject_h: float) -> list[replay.Run]:
    """One mode per machine per run, rotating so every (type, mode) is covered once."""
    rounds = max(len(m) for m in ALLOWED_MODES.values())
    hours = {"critical": 1.0, "high": 6.0, "medium": 24.0}
    runs = []
    for severity in severities:
        for r in range(rounds):
            injections = []
            for asset_type, count in replay.DEFAULT_FLEET.items():
                modes = ALLOWED_MODES[asset_type]
                for n in range(1, count + 1):
                    mode = modes[(r + n - 1) % len(modes)]
                    injections.append(
                        replay.Injection(
                            inject_h * 3600, asset_id_for(asset_type, n), mode, severity
                        )
                    )
            runs.append(
                replay.Run(
                    hours=inject_h + hours[severity] + 0.5, seed=r, injections=tuple(injections)
                )
            )
    return runs


def _score(args: tuple[replay.Run, bool]) -> dict[str, Any]:
    run, plain = args
    started = time.perf_counter()
    if plain:
        outcome = replay.replay(run, make_detector=replay.detector_before_semantics, context=False)
    else:
        outcome = replay.replay(run)
    result = replay.score(outcome)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def summarise_failures(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    failures = [f for r in results for f in r["failures"]]
    leads: dict[str, list[float]] = defaultdict(list)
    caught: dict[str, list[bool]] = defaultdict(list)
    for f in failures:
        key = f"{f['mode']}/{f['severity']}"
        caught[key].append(f["alarmed_before_failure"])
        if f["lead_time_s"] is not None:
            leads[key].append(f["lead_time_s"] / f["ramp_s"])
    return {
        "judged": len(failures),
        "alarmed_before_failure": sum(f["alarmed_before_failure"] for f in failures),
        "by_mode": {
            k: {
                "caught": f"{sum(v)}/{len(v)}",
                "median_lead_fraction": round(statistics.median(leads[k]), 3) if leads[k] else None,
            }
            for k, v in sorted(caught.items())
        },
        "unexplained_alarms": sum(r["unexplained_on_injected_machines"] for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0, help="healthy suite length (simulated)")
    ap.add_argument("--quick", action="store_true", help="8 h healthy, critical failures only")
    ap.add_argument(
        "--no-baseline-detector", action="store_true", help="skip the replay with the old detector"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--seeds", type=int, default=1, help="healthy replays with seeds 0..N-1 (more machine-days)"
    )
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()
    hours = 8.0 if args.quick else args.hours
    severities = ("critical",) if args.quick else ("critical", "high")
    jobs: list[tuple[str, replay.Run, bool]] = [
        ("healthy", healthy_run(hours, seed), False) for seed in range(args.seeds)
    ]
    jobs += [("failures", run, False) for run in failure_runs(severities, inject_h=4.0)]
    if not args.no_baseline_detector:
        jobs.append(("healthy-old-detector", healthy_run(hours), True))
    print(f"{len(jobs)} replays of the nine-machine fleet at 1 Hz on {args.workers} processes")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_score, [(run, plain) for _, run, plain in jobs]))
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (kind, _, _), result in zip(jobs, results, strict=True):
        by_kind[kind].append(result)
    for result in by_kind["healthy"]:
        result.pop("failures")
    healthy = by_kind["healthy"][0]
    days = sum(r["healthy_machines"] * r["hours"] / 24.0 for r in by_kind["healthy"])
    false = sum(r["false_alarms"] for r in by_kind["healthy"])
    all_seeds = {
        "seeds": args.seeds,
        "machine_days": round(days, 1),
        "false_alarms": false,
        "false_per_machine_week": round(7 * false / days, 3),
        "upper95_per_machine_week": round(7 * upper_rate(false, days), 3),
        "by_condition": dict(
            sum((Counter(r["false_by_condition"]) for r in by_kind["healthy"]), Counter())
        ),
    }
    out: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": benchkit.machine(),
        "healthy": healthy,
        "healthy_all_seeds": all_seeds,
        "failures": summarise_failures(by_kind["failures"]),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if by_kind.get("healthy-old-detector"):
        old = by_kind["healthy-old-detector"][0]
        old.pop("failures")
        out["healthy_old_detector"] = old
    print(json.dumps(out, indent=1))
    print(
        f"\nhealthy fleet, {hours:g} h x {healthy['machines']} machines: "
        f"{healthy['false_per_machine_day']} false alarms per machine-day "
        f"(goal <= {1 / 7:.3f}: one per machine-week), worst 10 min: "
        f"{healthy['max_alarms_per_10_min']} alarms, floods: {healthy['flood_windows']}"
    )
    if "healthy_old_detector" in out:
        old = out["healthy_old_detector"]
        print(
            f"same replay, the detector before sensor semantics: "
            f"{old['false_per_machine_day']} per machine-day, worst 10 min "
            f"{old['max_alarms_per_10_min']}, floods {old['flood_windows']}"
        )
    print(
        f"all healthy replays: {false} false alarms in {days:.0f} machine-days = "
        f"{all_seeds['false_per_machine_week']} per machine-week (95 % upper bound "
        f"{all_seeds['upper95_per_machine_week']}; goal <= 1)"
    )
    f = out["failures"]
    print(f"failures alarmed before they happen: {f['alarmed_before_failure']}/{f['judged']}")
    print(ISA_RATES)
    previous: Any = benchkit.save("alarms", out, as_baseline=args.save_baseline)
    if previous:
        print(
            f"baseline: {previous['healthy']['false_per_machine_day']} false/machine-day, "
            f"{previous['failures']['alarmed_before_failure']}/"
            f"{previous['failures']['judged']} failures caught"
        )


if __name__ == "__main__":
    main()
