"""Reference statistics prepared once per model version, so a scheduled drift check never
re-reads the training reference (Evidently recomputes everything from both frames on every
run, which is what makes it slow on wide or long data: its issues #506, #763, #1526).

A profile is small JSON: per numeric column n/mean/std/median, a sorted sample (the whole
column while it fits in `max_sample`, else `max_sample` mid-point quantiles: enough for the
Wasserstein-1 distance and the KS statistic), PSI bin edges with the reference shares, and the
distinct values with counts when there are few (the discrete tests); per categorical column
the category counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

PROFILE_VERSION = 1
# Evidently infers an integer column with at most this many distinct values as categorical.
INTEGER_CARDINALITY_LIMIT = 10
# Distinct values kept per numeric column: Evidently switches to count-based tests at <= 5
# distinct values (reference and current together), so a few more than that is enough.
MAX_DISCRETE_VALUES = 20
DEFAULT_MAX_SAMPLE = 1000
DEFAULT_PSI_BINS = 10

Scalar = str | int | float | bool
ColumnKind = Literal["numeric", "categorical"]


@dataclass
class NumericProfile:
    """One numeric column of the reference. `sample` is the sorted column itself when
    `exact` (n <= max_sample), else the quantiles at probabilities (i + 0.5) / len(sample)."""

    n: int
    missing: int
    mean: float
    std: float
    median: float
    minimum: float
    maximum: float
    sample: list[float]
    exact: bool
    psi_edges: list[float]
    psi_shares: list[float]
    # (value, count) while the reference has at most MAX_DISCRETE_VALUES distinct values.
    values: list[tuple[float, int]] | None = None
    kind: ColumnKind = "numeric"

    def sample_array(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.sample, dtype=np.float64)


@dataclass
class CategoricalProfile:
    """One categorical column of the reference: (category, count) pairs, missing excluded."""

    n: int
    missing: int
    counts: list[tuple[Scalar, int]]
    kind: ColumnKind = "categorical"

    def count_map(self) -> dict[Scalar, int]:
        return dict(self.counts)


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass
class ReferenceProfile:
    """Everything a drift check needs from the reference; `meta` says what it was built from
    (e.g. model name and version) so a stored profile can be matched to its model."""

    n_rows: int
    columns: dict[str, ColumnProfile]
    max_sample: int = DEFAULT_MAX_SAMPLE
    meta: dict[str, str] = field(default_factory=dict)
    version: int = PROFILE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "n_rows": self.n_rows,
            "max_sample": self.max_sample,
            "meta": dict(self.meta),
            "columns": {name: asdict(col) for name, col in self.columns.items()},
        }

    def to_json(self) -> str:
        # allow_nan: a constant column has std 0, never NaN; NaN would only come from bugs,
        # and JSON without NaN stays readable by any client.
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        if data.get("version") != PROFILE_VERSION:
            raise ValueError(f"unsupported drift profile version {data.get('version')!r}")
        columns: dict[str, ColumnProfile] = {}
        for name, col in data["columns"].items():
            if col["kind"] == "numeric":
                values = col.get("values")
                columns[name] = NumericProfile(
                    **{k: v for k, v in col.items() if k != "values"},
                    values=None if values is None else [(float(v), int(c)) for v, c in values],
                )
            else:
                columns[name] = CategoricalProfile(
                    n=col["n"],
                    missing=col["missing"],
                    counts=[(v, int(c)) for v, c in col["counts"]],
                )
        return cls(
            n_rows=data["n_rows"],
            columns=columns,
            max_sample=data.get("max_sample", DEFAULT_MAX_SAMPLE),
            meta=dict(data.get("meta", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        return cls.from_dict(json.loads(text))


def infer_kind(series: pd.Series) -> ColumnKind | None:
    """Evidently's own inference (`evidently.core.datasets.infer_column_type`), so both pick
    the same test: floats are numeric, integers with <= 10 distinct values categorical,
    strings/bool/category categorical. None for what neither handles (datetimes, lists)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_float_dtype(dtype):
        return "numeric"
    if pd.api.types.is_integer_dtype(dtype):
        return "categorical" if series.nunique() <= INTEGER_CARDINALITY_LIMIT else "numeric"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "categorical"
    return None


def numeric_values(series: pd.Series) -> npt.NDArray[np.float64]:
    """Finite values only: Evidently drops NaN and +-inf before testing, and so do we."""
    values = np.asarray(series, dtype=np.float64)
    return values[np.isfinite(values)]


def _native(value: Any) -> Scalar:
    """A JSON-native category (numpy scalars become Python ones)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _numeric_profile(raw: pd.Series, max_sample: int, psi_bins: int) -> NumericProfile:
    finite = numeric_values(raw)
    missing = len(raw) - len(finite)
    if len(finite) == 0:
        raise ValueError(f"column {raw.name!r} has no finite values in the reference")
    ordered = np.sort(finite)
    n = len(ordered)
    exact = n <= max_sample
    if exact:
        sample = ordered
    else:
        probs = (np.arange(max_sample) + 0.5) / max_sample
        sample = np.quantile(ordered, probs, method="inverted_cdf")
    edges = np.unique(np.quantile(ordered, np.linspace(0, 1, psi_bins + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, ordered, side="right"), minlength=len(edges) + 1)
    distinct, counts = np.unique(ordered, return_counts=True)
    values = (
        [(float(v), int(c)) for v, c in zip(distinct, counts, strict=True)]
        if len(distinct) <= MAX_DISCRETE_VALUES
        else None
    )
    return NumericProfile(
        n=n,
        missing=int(missing),
        mean=float(ordered.mean()),
        std=float(ordered.std()),
        median=float(np.median(ordered)),
        minimum=float(ordered[0]),
        maximum=float(ordered[-1]),
        sample=[float(v) for v in sample],
        exact=exact,
        psi_edges=[float(e) for e in edges],
        psi_shares=[float(s) for s in shares / n],
        values=values,
    )


def _categorical_profile(raw: pd.Series) -> CategoricalProfile:
    present = raw.dropna()
    if present.empty:
        raise ValueError(f"column {raw.name!r} has no values in the reference")
    counts = present.value_counts(sort=True)
    return CategoricalProfile(
        n=len(present),
        missing=len(raw) - len(present),
        counts=[(_native(k), int(c)) for k, c in counts.items()],
    )


def build_profile(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    max_sample: int = DEFAULT_MAX_SAMPLE,
    psi_bins: int = DEFAULT_PSI_BINS,
    categorical: Sequence[str] = (),
    meta: dict[str, str] | None = None,
) -> ReferenceProfile:
    """Profile `frame` (the model version's reference features) once, at registration.

    `max_sample` >= 1000 keeps every reference of up to 1000 rows whole, so the KS test that
    Evidently uses at that size is exact. `categorical` forces columns to be categorical
    (e.g. integer codes with many values); other kinds are inferred as Evidently does, and
    columns of no supported kind (datetimes) are skipped when `columns` is None.
    """
    if max_sample < 2:
        raise ValueError("max_sample must be at least 2")
    forced = set(categorical)
    names = list(frame.columns) if columns is None else list(columns)
    profiles: dict[str, ColumnProfile] = {}
    for name in names:
        series = frame[name]
        kind: ColumnKind | None = "categorical" if name in forced else infer_kind(series)
        if kind is None:
            if columns is not None:
                raise ValueError(f"column {name!r} of dtype {series.dtype} is not supported")
            continue
        if kind == "numeric":
            profiles[str(name)] = _numeric_profile(series, max_sample, psi_bins)
        else:
            profiles[str(name)] = _categorical_profile(series)
    return ReferenceProfile(
        n_rows=len(frame), columns=profiles, max_sample=max_sample, meta=dict(meta or {})
    )
