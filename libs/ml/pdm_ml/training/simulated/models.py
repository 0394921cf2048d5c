"""The two models, saved as plain files (LightGBM text + JSON; no pickle) and loaded back by
the pyfunc loader of this package (`pyfunc._load_pyfunc`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from pdm_ml.training.cmapss import quantile_frame
from pdm_ml.training.simulated.config import FloatArray
from pdm_ml.training.simulated.features import featurise, latest_features, tree_shap_top

if TYPE_CHECKING:
    import lightgbm as lgb

#: The import path MLflow records as the loader of every model logged from here: the
#: package, which re-exports `_load_pyfunc` (registered versions keep this name for good).
PYFUNC_LOADER_MODULE = "pdm_ml.training.simulated"
FORMAT_VERSION = 1
_META_FILE = "model.json"


@dataclass(slots=True)
class SimFailureModel:
    """P(failure within `horizon_h`), the failure mode and TreeSHAP factors of one asset's
    recent history. Satisfies the prediction service's history-model interface."""

    asset_type: str
    sensors: tuple[str, ...]
    windows: tuple[int, ...]
    features: tuple[str, ...]
    booster: lgb.Booster
    threshold: float
    horizon_h: float
    period_s: float
    modes: tuple[str, ...]
    mode_booster: lgb.Booster | None = None
    training: dict[str, Any] = field(default_factory=dict)

    pyfunc_loader_module: ClassVar[str] = PYFUNC_LOADER_MODULE
    kind: ClassVar[str] = "failure"
    modes_basis: ClassVar[str] = "conditional_on_failure"

    @property
    def horizon(self) -> str:
        return (
            f"failure within {self.horizon_h:g} h of the newest reading "
            f"(hours of a history sampled every {self.period_s:g} s)"
        )

    def latest_features(self, rows: pd.DataFrame) -> dict[str, float]:
        return latest_features(rows, self.sensors, self.windows)

    def featurise(self, history: pd.DataFrame) -> pd.DataFrame:
        return featurise(history, self.sensors, self.windows)

    def _x(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.reindex(columns=list(self.features)).astype(np.float64)

    def probabilities(self, frame: pd.DataFrame) -> FloatArray:
        return np.asarray(self.booster.predict(self._x(frame)), dtype=np.float64)

    def mode_probabilities(self, frame: pd.DataFrame) -> list[dict[str, float]]:
        if self.mode_booster is None or not self.modes:
            return [{} for _ in range(len(frame))]
        out = np.asarray(self.mode_booster.predict(self._x(frame)), dtype=np.float64)
        out = out.reshape(len(frame), -1)
        return [dict(zip(self.modes, map(float, row), strict=True)) for row in out]

    def contributions(self, frame: pd.DataFrame, k: int) -> list[list[tuple[str, float]]]:
        return tree_shap_top(self.booster, self._x(frame), k)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """The pyfunc view: P(failure) and the mode probabilities per feature row."""
        out = pd.DataFrame({"failure_probability": self.probabilities(features)})
        modes = pd.DataFrame(self.mode_probabilities(features), columns=list(self.modes))
        return pd.concat([out, modes.add_prefix("mode_")], axis=1).set_axis(features.index)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "failure.txt"))
        if self.mode_booster is not None:
            self.mode_booster.save_model(str(path / "modes.txt"))
        _write_meta(path, self, {
            "threshold": self.threshold,
            "horizon_h": self.horizon_h,
            "modes": list(self.modes),
            "has_modes": self.mode_booster is not None,
        })  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> SimFailureModel:
        import lightgbm as lgb

        path = Path(path)
        meta = _read_meta(path, cls.kind)
        return cls(
            asset_type=meta["asset_type"],
            sensors=tuple(meta["sensors"]),
            windows=tuple(meta["windows"]),
            features=tuple(meta["features"]),
            booster=lgb.Booster(model_file=str(path / "failure.txt")),
            threshold=float(meta["threshold"]),
            horizon_h=float(meta["horizon_h"]),
            period_s=float(meta["period_s"]),
            modes=tuple(meta["modes"]),
            mode_booster=lgb.Booster(model_file=str(path / "modes.txt"))
            if meta["has_modes"]
            else None,
            training=dict(meta.get("training", {})),
        )


@dataclass(slots=True)
class SimRulModel:
    """Remaining useful life in hours (p10/p50/p90) of one asset's recent history."""

    asset_type: str
    sensors: tuple[str, ...]
    windows: tuple[int, ...]
    features: tuple[str, ...]
    boosters: dict[str, lgb.Booster]
    cap_h: float
    period_s: float
    margins: tuple[float, ...] = (0.0,)
    margin_edges: tuple[float, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)

    pyfunc_loader_module: ClassVar[str] = PYFUNC_LOADER_MODULE
    kind: ClassVar[str] = "rul"
    rul_unit: ClassVar[str] = "hours"

    @property
    def rul_cap(self) -> float:
        return self.cap_h

    def latest_features(self, rows: pd.DataFrame) -> dict[str, float]:
        return latest_features(rows, self.sensors, self.windows)

    def featurise(self, history: pd.DataFrame) -> pd.DataFrame:
        return featurise(history, self.sensors, self.windows)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Calibrated p10/p50/p90 (hours, at most the cap) per feature row."""
        x = features.reindex(columns=list(self.features)).to_numpy(dtype=np.float64)
        raw = np.sort(np.column_stack([self.boosters[q].predict(x) for q in _QUANTILES]), axis=1)
        out = quantile_frame(raw, self.margins, self.margin_edges, features.index)
        return out.clip(upper=self.cap_h)

    def predict_history(self, rows: pd.DataFrame) -> dict[str, float]:
        """Serving: RUL quantiles at the newest row of ONE asset's history."""
        out = self.predict(pd.DataFrame([self.latest_features(rows)]))
        return {str(k): float(v) for k, v in out.iloc[0].items()}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(path / f"{name}.txt"))
        _write_meta(path, self, {
            "cap_h": self.cap_h,
            "margins": list(self.margins),
            "margin_edges": list(self.margin_edges),
        })  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> SimRulModel:
        import lightgbm as lgb

        path = Path(path)
        meta = _read_meta(path, cls.kind)
        return cls(
            asset_type=meta["asset_type"],
            sensors=tuple(meta["sensors"]),
            windows=tuple(meta["windows"]),
            features=tuple(meta["features"]),
            boosters={q: lgb.Booster(model_file=str(path / f"{q}.txt")) for q in _QUANTILES},
            cap_h=float(meta["cap_h"]),
            period_s=float(meta["period_s"]),
            margins=tuple(float(m) for m in meta["margins"]),
            margin_edges=tuple(float(e) for e in meta["margin_edges"]),
            training=dict(meta.get("training", {})),
        )


_QUANTILES: tuple[str, ...] = ("p10", "p50", "p90")
SimModel = SimFailureModel | SimRulModel


def _write_meta(path: Path, model: SimModel, extra: Mapping[str, Any]) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "asset_type": model.asset_type,
        "sensors": list(model.sensors),
        "windows": list(model.windows),
        "features": list(model.features),
        "period_s": model.period_s,
        "training": model.training,
        **extra,
    }
    (path / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def _read_meta(path: Path, kind: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((path / _META_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model format {meta.get('format_version')} unsupported")
    if kind is not None and meta.get("kind") != kind:
        raise ValueError(f"{path}: a {meta.get('kind')} model, not a {kind} model")
    return meta
