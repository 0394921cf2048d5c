"""What MLflow's pyfunc flavour loads: either model from its directory, behind `predict`.

`pdm_ml.training.simulated` re-exports `_load_pyfunc`: registered models name that package
as their loader module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pdm_ml.training.simulated.models import SimFailureModel, SimModel, SimRulModel, _read_meta


def load_model(path: str | Path) -> SimModel:
    """Either model from its directory (the kind is in its `model.json`)."""
    kind = _read_meta(Path(path))["kind"]
    return SimFailureModel.load(path) if kind == "failure" else SimRulModel.load(path)


class PyfuncAdapter:
    """What `mlflow.pyfunc.load_model` wraps: `predict` on window features for generic
    tools; `get_raw_model` gives the model itself (the registry loader unwraps it)."""

    def __init__(self, model: SimModel) -> None:
        self.model = model

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.model.predict(pd.DataFrame(model_input))

    def get_raw_model(self) -> SimModel:
        return self.model


def _load_pyfunc(data_path: str) -> PyfuncAdapter:
    """Entry point MLflow calls for a model logged with `loader_module=PYFUNC_LOADER_MODULE`."""
    return PyfuncAdapter(load_model(data_path))
