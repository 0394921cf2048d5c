"""Models registered before the kernel/ML split name their loader by the old import path
(`loader_module: pdm_common.training.simulated`); they must still load and score."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from pdm_ml import legacy
from pdm_ml.detectors import multivariate as mv


@pytest.mark.parametrize("old", sorted(legacy.MOVED))
def test_every_old_path_resolves_to_the_current_code(old: str) -> None:
    module = importlib.import_module(old)
    new = importlib.import_module(legacy.MOVED[old])
    assert module.__name__ == old
    public = [k for k in vars(new) if not k.startswith("__")]
    assert all(getattr(module, k) is getattr(new, k) for k in public)


def test_a_model_logged_with_the_old_loader_path_loads_in_a_serving_process(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    load = rng.normal(size=3000)
    frame = pd.DataFrame(
        {
            "flow": 50 + 12 * load + rng.normal(0, 1.0, load.size),
            "power": 11 + 4 * load + rng.normal(0, 0.2, load.size),
            "pressure": 4 + 1.2 * load + rng.normal(0, 0.08, load.size),
        }
    )
    model = mv.fit(frame)
    data = tmp_path / "data"
    model.save(data)
    saved = tmp_path / "model"
    mlflow.pyfunc.save_model(
        str(saved), loader_module="pdm_anomaly.detectors.multivariate", data_path=str(data)
    )
    assert "loader_module: pdm_anomaly.detectors.multivariate" in (saved / "MLmodel").read_text()
    probe = frame.iloc[:5]
    expected = model.predict_frame(probe)["score"].tolist()

    # A fresh interpreter that imports only what the anomaly service imports, as it serves.
    script = f"""
import json, sys
import pandas as pd
import pdm_anomaly.handlers  # the service as it runs: it imports pdm_ml, which adds the aliases
from pdm_common.registry import _load_local
model = _load_local({str(saved)!r}, None)
frame = pd.DataFrame(json.loads(sys.argv[1]))
print(json.dumps([type(model).__module__, type(model).__name__,
                  model.predict_frame(frame)["score"].tolist()]))
"""
    out = subprocess.run(
        [sys.executable, "-c", script, probe.to_json(orient="columns")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    module, name, scores = json.loads(out.stdout.strip().splitlines()[-1])
    assert (module, name) == ("pdm_ml.detectors.multivariate", "MultivariateModel")
    assert scores == pytest.approx(expected)
