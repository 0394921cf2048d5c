"""Import names of models registered before the code moved into `pdm_ml`.

A pyfunc model names its loader by import path in its `MLmodel` file (`loader_module:
pdm_common.training.simulated`). Versions registered before the kernel/ML split still say the
old path, and a registry keeps them for good, so every old path resolves to its new module
here. Importing `pdm_ml` installs the finder; anything that loads models imports `pdm_ml`
first (the serving services do, through the features and detectors they use).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Mapping, Sequence

#: Old import path -> where that code lives now (packages first, so their children resolve).
MOVED: Mapping[str, str] = {
    "pdm_common.training": "pdm_ml.training",
    "pdm_common.training.simulated": "pdm_ml.training.simulated",
    "pdm_common.training.cmapss": "pdm_ml.training.cmapss",
    "pdm_common.training.ai4i": "pdm_ml.training.ai4i",
    "pdm_common.features": "pdm_ml.features",
    "pdm_common.features.windows": "pdm_ml.features.windows",
    "pdm_common.features.machining": "pdm_ml.features.machining",
    "pdm_anomaly.detectors": "pdm_ml.detectors",
    "pdm_anomaly.detectors.multivariate": "pdm_ml.detectors.multivariate",
}


class _AliasLoader(importlib.abc.Loader):
    """A module under the old name that shares the new module's namespace (same functions,
    same classes), so whatever MLflow calls on it runs the current code."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return types.ModuleType(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        target = importlib.import_module(self.target)
        keep = {"__name__", "__spec__", "__loader__", "__package__"}
        module.__dict__.update({k: v for k, v in vars(target).items() if k not in keep})


class LegacyFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        is_package = any(other.startswith(fullname + ".") for other in MOVED)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new), is_package=is_package)


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(f, LegacyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, LegacyFinder())
