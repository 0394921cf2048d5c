"""The registry's conventions: model names (`<task>-<asset_type>`), the tags and artifact
paths every version carries, and what to run when a model is missing."""

from __future__ import annotations

CHAMPION = "champion"
TASKS: tuple[str, ...] = ("failure", "rul", "anomaly")
#: Tags every registered version must carry (the drift and prediction services filter on them).
REQUIRED_TAGS = ("asset_type", "task", "dataset", "feature_set")
REFERENCE_SAMPLE_PATH = "reference/reference_sample.parquet"
FEATURES_PATH = "features.json"
PROMOTION_TAG_PREFIX = "promotion."
#: Tag of a classifier version: the probability at which it calls a failure (chosen in training).
THRESHOLD_TAG = "decision_threshold"
#: Artifact of a failure classifier version: its failure-mode model (JSON).
MODES_ARTIFACT = "failure_modes.json"
#: How a registry miss tells the operator what to run, per task (name = `<task>-<asset_type>`).
TRAIN_HINTS: dict[str, str] = {
    "anomaly": "pdm train anomaly --asset-type {asset_type}",
    "failure": "pdm train ai4i",
    "rul": "pdm train cmapss --subset FD001",
}
#: Asset types whose failure and RUL models come from `pdm train simulated`.
SIMULATED_TYPES = frozenset({"pump", "motor", "compressor"})


def model_name(task: str, asset_type: str) -> str:
    """The platform's registered-model name for a task and asset type (`anomaly-pump`)."""
    return f"{task}-{asset_type}"


def train_hint(name: str) -> str:
    """What to run so that `name` gets a (champion) version."""
    task, _, asset_type = name.partition("-")
    template = TRAIN_HINTS.get(task)
    if task in ("failure", "rul") and asset_type in SIMULATED_TYPES:
        template = "pdm train simulated --asset-type {asset_type}"
    if template and asset_type:
        return f"run `{template.format(asset_type=asset_type)}`"
    return "run the training pipeline that registers it (`pdm train --help`)"
