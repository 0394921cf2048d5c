"""The anomaly-model training pipeline behind `pdm train anomaly`.

`pdm train anomaly --asset-type pump` reads the readings of every asset of that type, fits the
multivariate detector (`pdm_ml.detectors.multivariate`) on the older part of each
asset's history, evaluates it on the newer part, registers `anomaly-<type>` in MLflow, moves
`champion` to it only when it scores at least as well as the current champion on the *same*
evaluation, and announces a move on `pdm.models.v1` so serving processes reload.

Evaluation (so the promotion metric means something): the held-out snapshots are scored as
they are (false-alarm rate) and with synthetic single-sensor faults injected (detection rate),
magnitudes in robust sigmas of each sensor's training distribution:

    spike          ±4 σ on one sensor
    shift          ±1.5 σ on one sensor
    drift          ±(0..3) σ on one sensor, uniform: the snapshots of a linear ramp
    decorrelation  one sensor's value taken from another held-out snapshot (a broken
                   relation between sensors with every value individually plausible)

The promotion metric is `youden_j` = mean detection rate - held-out false-alarm rate.

"Healthy" history is all stored history in the window: the detector's robust fit tolerates a
few percent of anomalous snapshots, so no labels are needed (alarm windows are not excluded).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pdm_common import registry

if TYPE_CHECKING:
    from pdm_ml.detectors.multivariate import MultivariateConfig, MultivariateModel

PROMOTION_METRIC = "youden_j"
FAULT_KINDS = ("spike", "shift", "drift", "decorrelation")
#: Fault magnitudes in robust sigmas (see the module docstring).
SPIKE_SIGMA, SHIFT_SIGMA, DRIFT_MAX_SIGMA = 4.0, 1.5, 3.0
EVAL_MAX_SNAPSHOTS = 5000
REFERENCE_ROWS = 2000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class TrainError(Exception):
    """A failure the operator can fix; the message says how."""


# --------------------------------------------------------------------------------------------
# Pure steps
# --------------------------------------------------------------------------------------------


def parse_when(text: str, now: datetime) -> datetime:
    """`7d`/`12h`/`30m`/`2w`/`90s` before `now`, or an ISO 8601 time (UTC when naive)."""
    match = _DURATION.match(text)
    if match:
        return now - timedelta(**{_UNITS[match[2]]: float(match[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r}: use a duration like 7d, 12h, 30m or an ISO time like 2026-01-31T12:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pivot_snapshots(narrow: pd.DataFrame) -> pd.DataFrame:
    """Narrow `(asset_id, time, sensor, value)` rows -> one row per (asset_id, time), one
    column per sensor (NaN where a sensor did not report at that instant)."""
    if narrow.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["asset_id", "time"]))
    wide = narrow.pivot_table(
        index=["asset_id", "time"], columns="sensor", values="value", aggfunc="last"
    )
    wide.columns.name = None
    return wide.sort_index()


def split_by_time(
    frame: pd.DataFrame, holdout_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per asset, the older snapshots train and the newest `holdout_fraction` evaluate.

    A time split (not a random one) keeps neighbouring, near-identical snapshots out of both
    sides, so the held-out false-alarm rate is honest about what tomorrow looks like.
    """
    frame = frame.sort_index()
    order = frame.groupby(level="asset_id", sort=False).cumcount()
    size = order.groupby(level="asset_id", sort=False).transform("size")
    held = (order / size >= 1.0 - holdout_fraction).to_numpy()
    return frame[~held], frame[held]


def robust_sigma(frame: pd.DataFrame) -> pd.Series:
    """Per-sensor robust sigma (MAD), falling back to the standard deviation."""
    median = frame.median()
    mad = 1.4826 * (frame - median).abs().median()
    return mad.where(mad > 0, frame.std()).fillna(0.0)


@dataclass(frozen=True, slots=True)
class FaultSet:
    """Held-out snapshots with one injected fault each, and which sensor carries it."""

    kind: str
    frame: pd.DataFrame
    sensor: np.ndarray[Any, np.dtype[np.intp]]  # column index of the faulted sensor per row


def inject_faults(
    holdout: pd.DataFrame, sigma: pd.Series, seed: int = 0, max_rows: int = EVAL_MAX_SNAPSHOTS
) -> list[FaultSet]:
    """Single-sensor faults of each kind on (a sample of) complete held-out snapshots.

    Deterministic for a seed, so a candidate and the champion see exactly the same faults.
    """
    rng = np.random.default_rng(seed)
    base = holdout.dropna()
    if len(base) > max_rows:
        base = base.iloc[np.sort(rng.choice(len(base), max_rows, replace=False))]
    x = base.to_numpy(dtype=float)
    n, p = x.shape
    s = sigma.reindex(base.columns).to_numpy(dtype=float)
    out = []
    for kind in FAULT_KINDS:
        col = rng.integers(0, p, n)
        rows = np.arange(n)
        sign = rng.choice([-1.0, 1.0], n)
        faulty = x.copy()
        if kind == "spike":
            faulty[rows, col] += sign * SPIKE_SIGMA * s[col]
        elif kind == "shift":
            faulty[rows, col] += sign * SHIFT_SIGMA * s[col]
        elif kind == "drift":
            faulty[rows, col] += sign * rng.uniform(0.0, DRIFT_MAX_SIGMA, n) * s[col]
        else:
            faulty[rows, col] = x[rng.permutation(n), col]
        out.append(FaultSet(kind, pd.DataFrame(faulty, columns=base.columns), col))
    return out


@dataclass(frozen=True, slots=True)
class Evaluation:
    false_alarm_rate: float
    detection: Mapping[str, float]
    top_contributor_accuracy: float
    snapshots_scored: int

    @property
    def detection_rate(self) -> float:
        return float(np.mean(list(self.detection.values()))) if self.detection else 0.0

    @property
    def youden_j(self) -> float:
        return self.detection_rate - self.false_alarm_rate

    def metrics(self) -> dict[str, float]:
        out = {
            PROMOTION_METRIC: self.youden_j,
            "holdout_false_alarm_rate": self.false_alarm_rate,
            "detection_rate": self.detection_rate,
            "top_contributor_accuracy": self.top_contributor_accuracy,
        }
        out |= {f"detection_rate_{k}": v for k, v in self.detection.items()}
        return out


def evaluate(model: Any, holdout: pd.DataFrame, faults: list[FaultSet]) -> Evaluation:
    """Score held-out healthy snapshots and the injected faults with any model offering
    `score_batch(DataFrame) -> (values, shares)` and `threshold`/`sensors`.

    Snapshots the model cannot score (too few of its sensors) count as not flagged, so a
    model that ignores a sensor is not rewarded for it.
    """
    values, _ = model.score_batch(holdout)
    far = float(np.mean(np.nan_to_num(values, nan=0.0) >= model.threshold))
    detection: dict[str, float] = {}
    hits = total = 0
    for fault in faults:
        v, shares = model.score_batch(fault.frame)
        flagged = np.nan_to_num(v, nan=0.0) >= model.threshold
        detection[fault.kind] = float(np.mean(flagged)) if len(flagged) else 0.0
        if fault.kind == "decorrelation" or not flagged.any():
            continue  # a swapped value can be the same as the original: no ground truth
        names = np.asarray(model.sensors)
        top = names[np.argmax(np.nan_to_num(shares[flagged], nan=-1.0), axis=1)]
        truth = np.asarray(fault.frame.columns)[fault.sensor[flagged]]
        hits += int(np.sum(top == truth))
        total += int(flagged.sum())
    return Evaluation(far, detection, hits / total if total else 0.0, len(holdout))


@dataclass(frozen=True, slots=True)
class AnomalyTraining:
    model: MultivariateModel
    train: pd.DataFrame
    holdout: pd.DataFrame
    faults: list[FaultSet]
    evaluation: Evaluation
    fit_seconds: float
    score_us_per_snapshot: float


def train_anomaly(
    snapshots: pd.DataFrame,
    config: MultivariateConfig,
    *,
    holdout_fraction: float = 0.2,
    min_snapshots: int = 500,
    seed: int = 0,
) -> AnomalyTraining:
    """Split, fit, evaluate: everything but the I/O."""
    from pdm_ml.detectors.multivariate import InsufficientData, fit, select_sensors

    train, holdout = split_by_time(snapshots, holdout_fraction)
    complete = len(train[select_sensors(train, config)].dropna())
    if complete < min_snapshots:
        raise TrainError(
            f"{complete} complete training snapshots (of {len(snapshots)} in the window); "
            f"need {min_snapshots}: widen --since, let the assets report longer, or lower "
            "--min-snapshots"
        )
    import sklearn.covariance  # noqa: F401  (so fit_seconds measures the fit, not the import)

    started = time.perf_counter()
    try:
        model = fit(train.reset_index(drop=True), config)
    except InsufficientData as exc:
        raise TrainError(f"cannot fit: {exc}") from exc
    fit_seconds = time.perf_counter() - started
    holdout = holdout[list(model.sensors)]
    faults = inject_faults(holdout, robust_sigma(train[list(model.sensors)]), seed)
    started = time.perf_counter()
    evaluation = evaluate(model, holdout, faults)
    scored = len(holdout) + sum(len(f.frame) for f in faults)
    per_snapshot = (time.perf_counter() - started) / max(scored, 1) * 1e6
    return AnomalyTraining(model, train, holdout, faults, evaluation, fit_seconds, per_snapshot)


# --------------------------------------------------------------------------------------------
# I/O: database, registry, broker
# --------------------------------------------------------------------------------------------

_COUNT_SQL = """
SELECT count(*), count(DISTINCT r.sensor), count(DISTINCT r.asset_id)
FROM readings r JOIN assets a ON a.asset_id = r.asset_id
WHERE a.asset_type = %(asset_type)s AND r.time >= %(start)s AND r.time < %(end)s
"""
#: Sampling keeps whole snapshots: the hash is of (asset, time), the same for every sensor.
_READ_SQL = """
SELECT r.asset_id, r.time, r.sensor, r.value
FROM readings r JOIN assets a ON a.asset_id = r.asset_id
WHERE a.asset_type = %(asset_type)s AND r.time >= %(start)s AND r.time < %(end)s
  AND (hashtextextended(r.asset_id || '|' || r.time::text, 0) & 1023) < %(keep)s
"""


def read_history(
    database_url: str,
    asset_type: str,
    start: datetime,
    end: datetime,
    max_snapshots: int,
    echo: Callable[[str], None],
) -> pd.DataFrame:
    """Snapshots of every asset of `asset_type` in [start, end), sampled to ~max_snapshots."""
    import psycopg

    from pdm_common.db.migrations import describe_target

    params: dict[str, Any] = {"asset_type": asset_type, "start": start, "end": end}
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            rows, sensors, assets = conn.execute(_COUNT_SQL, params).fetchone() or (0, 0, 0)
            if rows == 0:
                raise TrainError(_no_history_message(conn, asset_type, start, end))
            snapshots = rows / max(sensors, 1)
            keep = (
                1024
                if snapshots <= max_snapshots
                else max(1, int(1024 * max_snapshots / snapshots))
            )
            echo(
                f"  {rows:,} readings, {assets} assets, {sensors} sensors"
                + (f"; sampling {keep / 1024:.1%} of snapshots" if keep < 1024 else "")
            )
            cur = conn.execute(_READ_SQL, params | {"keep": keep})
            narrow = pd.DataFrame(cur.fetchall(), columns=["asset_id", "time", "sensor", "value"])
    except psycopg.OperationalError as exc:
        raise TrainError(
            f"cannot reach PostgreSQL at {describe_target(database_url)} ({exc}). Is the stack "
            "up? Run `pdm stack up`, or set PDM_DATABASE_URL."
        ) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise TrainError(f"the database is not migrated ({exc}): run `pdm migrate`") from exc
    return pivot_snapshots(narrow)


def _no_history_message(conn: Any, asset_type: str, start: datetime, end: datetime) -> str:
    types = [r[0] for r in conn.execute("SELECT DISTINCT asset_type FROM assets ORDER BY 1")]
    known = ", ".join(str(t) for t in types if t) or "none"
    return (
        f"no readings of assets of type {asset_type!r} between {start:%Y-%m-%d %H:%M} and "
        f"{end:%Y-%m-%d %H:%M} UTC (asset types with assets: {known}). Widen --since, or "
        "start the simulator/gateways first (`pdm run`)."
    )


def champion_evaluator(
    holdout: pd.DataFrame, faults: list[FaultSet], tracking_uri: str, echo: Callable[[str], None]
) -> Callable[[registry.RegisteredVersion], float]:
    """Re-evaluate the current champion on the candidate's held-out data and faults."""

    def evaluate_champion(champion: registry.RegisteredVersion) -> float:
        try:
            loaded = registry.load_version(champion, tracking_uri)
            result = evaluate(loaded.model, holdout, faults)
        except registry.RegistryUnavailable:
            raise
        except Exception as exc:  # an unloadable champion cannot keep the alias
            echo(f"  champion v{champion.version} could not be evaluated ({exc!r})")
            return float("nan")
        echo(
            f"  champion v{champion.version} on the same data: {PROMOTION_METRIC}="
            f"{result.youden_j:.4f} (false alarms {result.false_alarm_rate:.4%})"
        )
        return result.youden_j

    return evaluate_champion


def register_anomaly(
    result: AnomalyTraining,
    name: str,
    asset_type: str,
    start: datetime,
    end: datetime,
    tracking_uri: str,
) -> registry.RegisteredVersion:
    model = result.model
    sensors = list(model.sensors)
    train = result.train[sensors].dropna()
    reference = train.sample(min(REFERENCE_ROWS, len(train)), random_state=model.config.seed)
    example = reference.head(5).reset_index(drop=True)
    assets = result.train.index.get_level_values("asset_id").unique()
    metrics = result.evaluation.metrics() | {
        "train_false_alarm_rate": float(model.training["train_false_alarm_rate"]),
        "tau": float(model.training["tau"]),
        "fit_seconds": result.fit_seconds,
        "score_us_per_snapshot": result.score_us_per_snapshot,
        "train_snapshots": float(len(result.train)),
        "holdout_snapshots": float(len(result.holdout)),
    }
    config = model.config
    params = {
        "detector": "robust_mahalanobis_rbc",
        "false_alarm_target": config.false_alarm_target,
        "robust": config.robust,
        "ridge": config.ridge,
        "min_sensors": config.min_sensors,
        "min_sensor_fraction": config.min_sensor_fraction,
        "window_start": start.isoformat(timespec="seconds"),
        "window_end": end.isoformat(timespec="seconds"),
        "assets": len(assets),
        "seed": config.seed,
    }
    return registry.log_and_register(
        model,
        name=name,
        flavor="pyfunc",
        params=params,
        metrics=metrics,
        tags={
            "asset_type": asset_type,
            "task": "anomaly",
            "dataset": f"readings:{asset_type}:{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}",
            "feature_set": "snapshot:" + ",".join(sensors),
        },
        signature_input=example,
        signature_output=model.predict_frame(example),
        optional_inputs=True,
        input_example=example,
        reference_sample=reference.reset_index(drop=True),
        features=sensors,
        tracking_uri=tracking_uri,
    )
