"""Replay the simulated fleet through the anomaly service's decision code and score every
alarm against the simulator's ground truth, the way an operator lives it.

The replay runs in one process, without Kafka or a database, but it runs the service's own
per-snapshot path (`pdm_anomaly.state.evaluate` feeding `pdm_anomaly.alarms.AlarmBook`, with the
service's limits and univariate detectors) on the simulator's own machines, so a day of a
fleet takes a minute. Service restarts are replayed as the service does them: detectors are
rebuilt from the last stored readings (`warm_up`) and open alarms are adopted from storage.
Operating-context changes (scenario changes, repairs) go through the same context handling
as the service's consumer of `pdm.simulator.truth.v1`.

Scores (see `score`): false alarms per machine-day on machines with nothing injected (per
asset type, detector and condition), the share of injected failures alarmed before they fail,
the lead time per mode, and alarm floods (alarms per 10 minutes, ISA-18.2).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pdm_anomaly.alarms import AlarmBook, AlarmPolicy
from pdm_anomaly.context import rebaseline
from pdm_anomaly.state import AssetState, StreamingDetector, evaluate, warm_up
from pdm_ml.detectors.factory import detector_for
from pdm_ml.detectors.limits import Limit, default_limits
from pdm_ml.detectors.semantics import SensorCatalog, simulated_catalog
from pdm_ml.detectors.univariate import UnivariateConfig, UnivariateDetector
from pdm_ml.simulation.machines import Fleet, GroundTruth, sensor_names

EPOCH = datetime(2026, 3, 2, tzinfo=UTC)
#: The default simulated fleet of `pdm run` (nine machines).
DEFAULT_FLEET: Mapping[str, int] = {"pump": 3, "motor": 2, "compressor": 2, "milling": 2}
#: ISA-18.2 / EEMUA 191: more than 10 alarms in 10 minutes for one operator is a flood.
FLOOD_ALARMS = 10
FLOOD_WINDOW_S = 600.0
#: An alarm this long after the failure still belongs to it (the machine is held failed).
AFTER_FAILURE_S = 3600.0


@dataclass(frozen=True, slots=True)
class Injection:
    at_s: float
    asset_id: str
    mode: str
    severity: str
    ramp_s: float | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One deterministic replay: a fleet, a timeline of scenarios, injections and restarts."""

    hours: float
    period_s: float = 1.0
    seed: int = 0
    fleet: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_FLEET))
    scenarios: tuple[tuple[float, str], ...] = ()
    injections: tuple[Injection, ...] = ()
    restarts: tuple[float, ...] = ()
    warmup_readings: int = 1024
    start_scenario: str = "normal"


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    asset_id: str
    asset_type: str
    condition: str
    detector: str
    severity: str
    opened_s: float
    contributors: tuple[str, ...]


@dataclass(slots=True)
class Outcome:
    run: Run
    alarms: list[AlarmRecord]
    truths: list[GroundTruth]
    asset_types: dict[str, str]


def replay(
    run: Run,
    *,
    catalog: SensorCatalog | None = None,
    limits: Mapping[str, Mapping[str, Limit]] | None = None,
    make_detector: Callable[[str], StreamingDetector] | None = None,
    policy: AlarmPolicy | None = None,
    progress: Callable[[float], None] | None = None,
    context: bool = True,
) -> Outcome:
    """Run the fleet for `run.hours` and collect every alarm the service would open.

    `context=False` replays without telling the detectors about scenario changes (what the
    service did before it consumed context events)."""
    catalog = catalog or simulated_catalog()
    limits = default_limits() if limits is None else limits
    fleet = Fleet.build(dict(run.fleet), seed=run.seed, scenario=run.start_scenario)
    asset_types: dict[str, str] = {a: m.asset_type for a, m in fleet.machines.items()}
    book = AlarmBook(policy or AlarmPolicy())
    states = {a: AssetState(asset_type=t) for a, t in asset_types.items()}
    makers = {a: make_detector or detector_for(catalog, t) for a, t in asset_types.items()}
    history: dict[str, deque[tuple[str, float, float]]] = {
        a: deque(maxlen=run.warmup_readings * len(sensor_names(fleet[a].asset_type)))
        for a, t in asset_types.items()
    }
    timeline: list[tuple[float, int, tuple[str, object]]] = [
        *((s, 0, ("scenario", name)) for s, name in run.scenarios),
        *((i.at_s, 1, ("inject", i)) for i in run.injections),
        *((s, 2, ("restart", None)) for s in run.restarts),
    ]
    events = sorted(timeline, key=lambda e: (e[0], e[1]))
    alarms: list[AlarmRecord] = []
    truths: list[GroundTruth] = []
    steps = int(run.hours * 3600 / run.period_s)
    next_event = 0
    for step in range(steps):
        now_s = step * run.period_s
        t = EPOCH + timedelta(seconds=now_s)
        while next_event < len(events) and events[next_event][0] <= now_s:
            _, _, (kind, arg) = events[next_event]
            next_event += 1
            if kind == "scenario":
                fleet.set_scenario(str(arg))
                for state in states.values() if context else ():
                    rebaseline(state, "scenario", t.timestamp(), catalog)
            elif kind == "inject" and isinstance(arg, Injection):
                ramp = timedelta(seconds=arg.ramp_s) if arg.ramp_s else None
                fleet[arg.asset_id].inject(arg.mode, arg.severity, t, ramp)
            elif kind == "restart":
                open_alarms = book.open_alarms()
                book = AlarmBook(book.policy, open_alarms)
                for asset_id, state in states.items():
                    fresh = AssetState(asset_type=state.asset_type)
                    warm_up(fresh, history[asset_id], makers[asset_id])
                    states[asset_id] = fresh
        truths.extend(fleet.drain_truth())
        ts = t.timestamp()
        for snap in fleet.snapshots(t):
            asset_id = snap["asset_id"]
            state = states[asset_id]
            readings: dict[str, float] = snap["readings"]
            hist = history[asset_id]
            for sensor, value in readings.items():
                hist.append((sensor, ts, value))
            for condition, score in evaluate(
                state,
                ts,
                readings,
                make_detector=makers[asset_id],
                limits=limits.get(state.asset_type or "", {}),
                model=None,
            ):
                change = book.observe(asset_id, condition, score, t, state.asset_type)
                if change is not None and change.kind == "alarm.opened":
                    a = change.alarm
                    alarms.append(
                        AlarmRecord(
                            asset_id,
                            asset_types[asset_id],
                            a.condition,
                            a.detector,
                            a.severity,
                            now_s,
                            tuple(sorted(a.contributors)),
                        )
                    )
        if progress is not None and step % 3600 == 0:
            progress(now_s / 3600)
    truths.extend(fleet.drain_truth())
    return Outcome(run, alarms, _final_truths(truths), asset_types)


def _final_truths(truths: Sequence[GroundTruth]) -> list[GroundTruth]:
    """One record per injection (the simulator re-publishes a truth when it changes)."""
    latest: dict[tuple[str, str, datetime], GroundTruth] = {}
    for truth in truths:
        latest[(truth.asset_id, truth.mode, truth.injected_at)] = truth
    return list(latest.values())


def detector_before_semantics(sensor: str) -> UnivariateDetector:
    """The detector the service ran for every sensor before sensor semantics and day-long
    ranges (blocks of 512 readings, no practical gate), to compare with on the same replay
    (with `context=False`)."""
    config = UnivariateConfig(
        envelope_block_s=0.0,
        min_level_fraction=0.0,
        young_level_fraction=0.0,
        provisional_level_fraction=0.0,
    )
    return UnivariateDetector(config, sensor=sensor)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _seconds(t: datetime) -> float:
    return (t - EPOCH).total_seconds()


def score(outcome: Outcome) -> dict[str, Any]:
    """Operator-facing figures of one replay (plain JSON)."""
    run = outcome.run
    hours = run.hours
    injected = {t.asset_id for t in outcome.truths}
    healthy = sorted(a for a in outcome.asset_types if a not in injected)
    spans: dict[str, list[tuple[float, float, GroundTruth]]] = defaultdict(list)
    for truth in outcome.truths:
        start = _seconds(truth.injected_at)
        end = (
            _seconds(truth.expected_failure_at) + AFTER_FAILURE_S
            if truth.expected_failure_at is not None
            else hours * 3600
        )
        spans[truth.asset_id].append((start, end, truth))

    def explained(alarm: AlarmRecord) -> GroundTruth | None:
        for start, end, truth in spans.get(alarm.asset_id, ()):
            if start <= alarm.opened_s <= end:
                return truth
        return None

    false = [a for a in outcome.alarms if a.asset_id in healthy]
    healthy_days = len(healthy) * hours / 24.0
    by_type_days = Counter(outcome.asset_types[a] for a in healthy)
    per_type = {
        t: round(sum(1 for a in false if a.asset_type == t) / (n * hours / 24.0), 3)
        for t, n in sorted(by_type_days.items())
    }
    failures: list[dict[str, Any]] = []
    for truth in outcome.truths:
        if not truth.is_failure or truth.expected_failure_at is None:
            continue
        start, fail = _seconds(truth.injected_at), _seconds(truth.expected_failure_at)
        if fail > hours * 3600:
            continue  # fails after the run: cannot be judged
        mine = sorted(
            a.opened_s
            for a in outcome.alarms
            if a.asset_id == truth.asset_id and start <= a.opened_s
        )
        first = mine[0] if mine else None
        failures.append(
            {
                "asset_id": truth.asset_id,
                "mode": truth.mode,
                "severity": truth.severity,
                "ramp_s": fail - start,
                "first_alarm_after_s": None if first is None else first - start,
                "alarmed_before_failure": first is not None and first < fail,
                "lead_time_s": None if first is None or first >= fail else fail - first,
            }
        )
    leads: dict[str, list[float]] = defaultdict(list)
    for f in failures:
        if f["lead_time_s"] is not None:
            leads[f["mode"]].append(f["lead_time_s"] / f["ramp_s"])
    opened = sorted(a.opened_s for a in outcome.alarms)
    windows = Counter(int(s // FLOOD_WINDOW_S) for s in opened)
    return {
        "hours": hours,
        "machines": len(outcome.asset_types),
        "healthy_machines": len(healthy),
        "alarms": len(outcome.alarms),
        "false_alarms": len(false),
        "false_per_machine_day": round(len(false) / healthy_days, 3) if healthy_days else None,
        "false_per_machine_day_by_type": per_type,
        "false_by_detector": dict(Counter(a.detector for a in false).most_common()),
        "false_by_condition": dict(
            Counter(f"{a.asset_type}/{a.condition}" for a in false).most_common()
        ),
        "unexplained_on_injected_machines": sum(
            1 for a in outcome.alarms if a.asset_id not in healthy and explained(a) is None
        ),
        "failures": failures,
        "alarmed_before_failure": sum(f["alarmed_before_failure"] for f in failures),
        "failures_judged": len(failures),
        "median_lead_fraction_by_mode": {
            m: round(statistics.median(v), 3) for m, v in sorted(leads.items())
        },
        "max_alarms_per_10_min": max(windows.values(), default=0),
        "flood_windows": sum(1 for n in windows.values() if n > FLOOD_ALARMS),
    }
