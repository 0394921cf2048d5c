"""Model registry access (MLflow) shared by every trainer and serving process.

Conventions:

* A registered model is named `<task>-<asset_type>` (`anomaly-pump`, `failure-ai4i`), see
  `model_name`. Every version carries the tags `task` (failure | rul | anomaly),
  `asset_type`, `dataset`, `feature_set`, plus `flavor`, `features` and `reference_sample`
  written here.
* Serving loads `models:/<name>@champion`; the alias only moves when a candidate is at least
  as good as the champion on the *same* evaluation (`promote_if_better`), and every decision
  is written on the candidate version as `promotion.*` tags.
* Errors are typed: `RegistryUnavailable` (the server cannot be reached: retry later) is not
  `ModelNotFound` / `NoChampion` (the registry answered: someone has to train first).

Heavy imports (mlflow ~4 s, pandas) happen inside the functions, so importing this package
is cheap. Loading runs blocking HTTP and file I/O: from asyncio use `ChampionCache.aget` /
`areload`, which run it in a worker thread.

The parts: `naming` (model names, tags, training hints), `errors`, `client` (reachability
and error translation), `registration` (logging a run and registering its model),
`versions` (looking versions up; listing the models with their aliased versions),
`promotion` (the promotion rule and its evidence), `loading` (a version in its native form)
and `cache` (`ChampionCache`). Everything public is importable from here.
"""

from pdm_common.registry.cache import ChampionCache
from pdm_common.registry.client import check_reachable
from pdm_common.registry.errors import ModelNotFound, NoChampion, RegistryError, RegistryUnavailable
from pdm_common.registry.loading import LoadedModel, RegistryBound, load_champion, load_version
from pdm_common.registry.loading import _load_local as _load_local
from pdm_common.registry.naming import (
    CHAMPION,
    FEATURES_PATH,
    MODES_ARTIFACT,
    PROMOTION_TAG_PREFIX,
    REFERENCE_SAMPLE_PATH,
    REQUIRED_TAGS,
    SIMULATED_TYPES,
    TASKS,
    THRESHOLD_TAG,
    TRAIN_HINTS,
    model_name,
    train_hint,
)
from pdm_common.registry.promotion import (
    PromotionDecision,
    alias_version,
    decide,
    describe,
    promote_if_better,
    promotion_tags,
    set_alias,
)
from pdm_common.registry.registration import (
    DirectoryModel,
    default_pip_requirements,
    log_and_register,
    validate_tags,
)
from pdm_common.registry.versions import (
    RegisteredVersion,
    ServedModel,
    get_version,
    list_models,
    load_reference_sample,
)

__all__ = [
    "CHAMPION",
    "FEATURES_PATH",
    "MODES_ARTIFACT",
    "PROMOTION_TAG_PREFIX",
    "REFERENCE_SAMPLE_PATH",
    "REQUIRED_TAGS",
    "SIMULATED_TYPES",
    "TASKS",
    "THRESHOLD_TAG",
    "TRAIN_HINTS",
    "ChampionCache",
    "DirectoryModel",
    "LoadedModel",
    "ModelNotFound",
    "NoChampion",
    "PromotionDecision",
    "RegisteredVersion",
    "RegistryBound",
    "RegistryError",
    "RegistryUnavailable",
    "ServedModel",
    "alias_version",
    "check_reachable",
    "decide",
    "default_pip_requirements",
    "describe",
    "get_version",
    "list_models",
    "load_champion",
    "load_reference_sample",
    "load_version",
    "log_and_register",
    "model_name",
    "promote_if_better",
    "promotion_tags",
    "set_alias",
    "train_hint",
    "validate_tags",
]
