"""A scheduled drift check: the current window against a `ReferenceProfile`.

Which test per column is Evidently 0.7's default (`evidently.legacy.calculations.stattests.
registry._get_default_stattest`), so our verdicts and the HTML report a service stores next to
them agree; n_ref is the reference's count of finite values, "distinct" counts reference and
current together:

| column      | n_ref  | distinct | test (drift when)                                      |
|-------------|--------|----------|--------------------------------------------------------|
| numeric     | > 1000 | > 5      | Wasserstein-1 / reference std (ddof 0, floor 0.001) >= 0.1 |
| numeric     | > 1000 | <= 5     | Jensen-Shannon distance of value shares >= 0.1         |
| numeric     | <= 1000| > 5      | two-sample KS p-value <= 0.05                          |
| num./categ. | <= 1000| 3..5 / >2| chi-square p-value < 0.05 (expected = reference shares) |
| num./categ. | <= 1000| <= 2     | two-proportion z-test p-value < 0.05                   |
| categorical | > 1000 | any      | Jensen-Shannon distance of category shares >= 0.1      |

Why not always a p-value: with 100k rows any negligible shift is "significant"; a distance in
units of the reference spread (or a JS distance) is a size of effect, which is what an engineer
acts on. Evidently draws the line at 1000 reference rows and so do we.

PSI (10 reference-quantile bins, shares clipped at 1e-4) is reported per numeric column beside
the verdict, with the usual bands (< 0.1 stable, < 0.25 moderate, else significant), because
plant engineers know it; it does not decide the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from pdm_ml.drift.profile import (
    CategoricalProfile,
    ColumnKind,
    NumericProfile,
    ReferenceProfile,
    Scalar,
    numeric_values,
)

LARGE_REFERENCE = 1000  # Evidently: above this many reference rows, distances instead of tests
DISCRETE_LIMIT = 5  # Evidently: numeric columns with at most this many values are count-tested
WASSERSTEIN_THRESHOLD = 0.1
JENSEN_SHANNON_THRESHOLD = 0.1
P_VALUE_THRESHOLD = 0.05
PSI_BANDS = (0.1, 0.25)
PSI_FLOOR = 1e-4
# Evidently's DataDriftPreset calls the data set drifted when >= half the columns drifted.
DEFAULT_DRIFT_SHARE = 0.5

Method = Literal["wasserstein", "jensenshannon", "ks", "chisquare", "z", "none"]


@dataclass
class ColumnDrift:
    """One column's verdict. `statistic` is a distance for wasserstein/jensenshannon (drift
    when >= threshold) and a p-value for ks/chisquare/z (drift when below); `drifted` is None
    when the current window has no usable value in the column."""

    column: str
    kind: ColumnKind
    method: Method
    statistic: float
    threshold: float
    drifted: bool | None
    reference_rows: int
    current_rows: int
    current_missing: int
    importance: float = 0.0
    # numeric only: shifts in the column's own units, and PSI
    mean_reference: float | None = None
    mean_current: float | None = None
    mean_shift: float | None = None
    median_reference: float | None = None
    median_current: float | None = None
    median_shift: float | None = None
    psi: float | None = None
    psi_band: Literal["stable", "moderate", "significant"] | None = None
    # categorical only: current minus reference share of the categories that moved most
    share_shift: dict[str, float] = field(default_factory=dict)


@dataclass
class DriftResult:
    """A check's outcome per column and per model."""

    columns: dict[str, ColumnDrift]
    current_rows: int
    n_checked: int
    n_drifted: int
    share_drifted: float
    # the drifted share weighted by feature importance (= share_drifted without importances)
    weighted_share_drifted: float
    dataset_drift: bool
    drift_share: float
    missing_columns: list[str] = field(default_factory=list)

    def drifted_columns(self) -> list[str]:
        return [name for name, col in self.columns.items() if col.drifted]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headlines(self, top: int = 5) -> list[str]:
        """Plain lines for a report, most important drifted columns first, e.g.
        "bearing_temperature: mean +8.0, median +7.9 (wasserstein 0.93 >= 0.1, PSI 1.2)"."""
        drifted = sorted((c for c in self.columns.values() if c.drifted), key=_headline_order)
        lines = []
        for col in drifted[:top]:
            test = f"{col.method} {col.statistic:.3g} vs {col.threshold:g}"
            if col.kind == "numeric" and col.mean_shift is not None:
                psi = f", PSI {col.psi:.2f}" if col.psi is not None else ""
                lines.append(
                    f"{col.column}: mean {col.mean_shift:+.4g}, median {col.median_shift:+.4g}"
                    f" ({test}{psi})"
                )
            else:
                moved = ", ".join(f"{k} {v:+.1%}" for k, v in list(col.share_shift.items())[:3])
                lines.append(f"{col.column}: {moved} ({test})")
        return lines


_DISTANCES = ("wasserstein", "jensenshannon")


def _headline_order(c: ColumnDrift) -> tuple[float, float, float]:
    """Most important first; then the largest PSI (comparable across tests, in bands people
    know); then the strongest test result (largest distance, smallest p-value)."""
    psi = c.psi if c.psi is not None and np.isfinite(c.psi) else 0.0
    strength = -abs(c.statistic) if c.method in _DISTANCES else c.statistic
    return (-c.importance, -psi, strength if np.isfinite(strength) else 0.0)


def check(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    importance: Mapping[str, float] | None = None,
    *,
    drift_share: float = DEFAULT_DRIFT_SHARE,
) -> DriftResult:
    """Test every profiled column of `current` against the reference statistics.

    Rows with NaN (or +-inf) in a column are left out of that column's test and counted in
    `current_missing`. A profiled column absent from `current` is listed in `missing_columns`
    (a feature the model needs went missing: the caller should say so loudly).
    `importance` weights (e.g. mean |SHAP| or gain) give the importance-weighted drifted share;
    columns without a weight count 0 there.
    """
    weights = dict(importance or {})
    results: dict[str, ColumnDrift] = {}
    missing: list[str] = []
    for name, col in profile.columns.items():
        if name not in current.columns:
            missing.append(name)
            continue
        if isinstance(col, NumericProfile):
            result = _check_numeric(name, col, current[name])
        else:
            result = _check_categorical(name, col, current[name])
        result.importance = float(weights.get(name, 0.0))
        results[name] = result
    judged = [c for c in results.values() if c.drifted is not None]
    n_drifted = sum(1 for c in judged if c.drifted)
    share = n_drifted / len(judged) if judged else 0.0
    if importance is None:
        weighted = share
    else:
        total = sum(max(c.importance, 0.0) for c in judged)
        hit = sum(max(c.importance, 0.0) for c in judged if c.drifted)
        weighted = hit / total if total > 0 else 0.0
    return DriftResult(
        columns=results,
        current_rows=len(current),
        n_checked=len(judged),
        n_drifted=n_drifted,
        share_drifted=share,
        weighted_share_drifted=weighted,
        dataset_drift=bool(judged) and share >= drift_share,
        drift_share=drift_share,
        missing_columns=missing,
    )


def _check_numeric(name: str, ref: NumericProfile, raw: pd.Series) -> ColumnDrift:
    cur = numeric_values(raw)
    base = ColumnDrift(
        column=name,
        kind="numeric",
        method="none",
        statistic=float("nan"),
        threshold=float("nan"),
        drifted=None,
        reference_rows=ref.n,
        current_rows=len(cur),
        current_missing=len(raw) - len(cur),
        mean_reference=ref.mean,
        median_reference=ref.median,
    )
    if len(cur) == 0:
        return base
    cur = np.sort(cur)
    base.mean_current = float(cur.mean())
    base.median_current = float(np.median(cur))
    base.mean_shift = base.mean_current - ref.mean
    base.median_shift = base.median_current - ref.median
    base.psi = _psi(ref, cur)
    base.psi_band = (
        "stable"
        if base.psi < PSI_BANDS[0]
        else "moderate"
        if base.psi < PSI_BANDS[1]
        else "significant"
    )

    discrete = _discrete_union(ref, cur)
    if discrete is not None and len(discrete) <= DISCRETE_LIMIT:
        ref_counts: dict[Scalar, int] = dict(ref.values or [])
        values, counts = np.unique(cur, return_counts=True)
        cur_counts: dict[Scalar, int] = {
            float(v): int(c) for v, c in zip(values, counts, strict=True)
        }
        keys: list[Scalar] = sorted(discrete)
        method, stat, threshold, drifted = _count_test(keys, ref_counts, cur_counts, ref.n)
    elif ref.n > LARGE_REFERENCE:
        method, threshold = "wasserstein", WASSERSTEIN_THRESHOLD
        stat = float(stats.wasserstein_distance(cur, ref.sample_array())) / max(ref.std, 0.001)
        drifted = stat >= threshold
    else:
        method, threshold = "ks", P_VALUE_THRESHOLD
        stat = _ks_p_value(ref, cur)
        drifted = stat <= threshold
    base.method, base.statistic, base.threshold, base.drifted = method, stat, threshold, drifted
    return base


def _check_categorical(name: str, ref: CategoricalProfile, raw: pd.Series) -> ColumnDrift:
    present = raw.dropna()
    base = ColumnDrift(
        column=name,
        kind="categorical",
        method="none",
        statistic=float("nan"),
        threshold=float("nan"),
        drifted=None,
        reference_rows=ref.n,
        current_rows=len(present),
        current_missing=len(raw) - len(present),
    )
    if present.empty:
        return base
    ref_counts = ref.count_map()
    cur_counts: dict[Scalar, int] = {k: int(c) for k, c in present.value_counts().items()}
    keys = list(dict.fromkeys([*ref_counts, *cur_counts]))
    method, stat, threshold, drifted = _count_test(keys, ref_counts, cur_counts, ref.n)
    base.method, base.statistic, base.threshold, base.drifted = method, stat, threshold, drifted
    shifts = {
        str(k): cur_counts.get(k, 0) / len(present) - ref_counts.get(k, 0) / ref.n for k in keys
    }
    base.share_shift = dict(sorted(shifts.items(), key=lambda kv: -abs(kv[1]))[:5])
    return base


def _discrete_union(ref: NumericProfile, cur: npt.NDArray[np.float64]) -> set[float] | None:
    """The distinct values of reference and current together while they could be <= 5."""
    if ref.values is None or len(ref.values) > DISCRETE_LIMIT:
        return None
    union = {v for v, _ in ref.values}
    # cur is sorted: its distinct values are where it changes; stop once past the limit
    changes = np.flatnonzero(np.diff(cur)) + 1
    if len(changes) + 1 > DISCRETE_LIMIT + len(union):
        return None
    union.update(float(v) for v in cur[np.concatenate(([0], changes))])
    return union


def _count_test(
    keys: list[Scalar],
    ref_counts: Mapping[Scalar, int],
    cur_counts: Mapping[Scalar, int],
    n_ref: int,
) -> tuple[Method, float, float, bool]:
    """Count-based tests on category (or few-value) shares, chosen as Evidently does."""
    ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64)
    cur = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.float64)
    if n_ref > LARGE_REFERENCE:
        stat = float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))
        return "jensenshannon", stat, JENSEN_SHANNON_THRESHOLD, stat >= JENSEN_SHANNON_THRESHOLD
    if len(keys) > 2:
        expected = ref * (cur.sum() / ref.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(expected > 0, (cur - expected) ** 2 / expected, np.inf)
        terms = np.where((expected == 0) & (cur == 0), 0.0, terms)
        p = float(stats.chi2.sf(terms.sum(), len(keys) - 1))
        return "chisquare", p, P_VALUE_THRESHOLD, p < P_VALUE_THRESHOLD
    p = _z_test(keys, ref, cur)
    return "z", p, P_VALUE_THRESHOLD, p < P_VALUE_THRESHOLD


def _z_test(
    keys: list[Scalar], ref: npt.NDArray[np.float64], cur: npt.NDArray[np.float64]
) -> float:
    """Two-proportion z-test on the share of the first key (sorted), as Evidently's `z`."""
    if len(keys) < 2:
        return 1.0
    try:
        first = keys.index(sorted(keys)[0])
    except TypeError:  # mixed category types: any fixed choice gives the same p-value
        first = 0
    n1, n2 = ref.sum(), cur.sum()
    p1, p2 = 1 - ref[first] / n1, 1 - cur[first] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(2 * stats.norm.sf(abs((p1 - p2) / se)))


def _ks_p_value(ref: NumericProfile, cur: npt.NDArray[np.float64]) -> float:
    """Exact two-sample KS when the profile holds the whole reference (always so at <= 1000
    rows with the default `max_sample`); else D from the quantile sample and the asymptotic
    p-value at the true reference size."""
    sample = ref.sample_array()
    if ref.exact:
        return float(stats.ks_2samp(sample, cur).pvalue)
    d = float(stats.ks_2samp(sample, cur).statistic)
    en = round(ref.n * len(cur) / (ref.n + len(cur)))
    return float(stats.kstwo.sf(d, en))


def _psi(ref: NumericProfile, cur: npt.NDArray[np.float64]) -> float:
    edges = np.asarray(ref.psi_edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    actual = np.clip(counts / len(cur), PSI_FLOOR, None)
    expected = np.clip(np.asarray(ref.psi_shares, dtype=np.float64), PSI_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
