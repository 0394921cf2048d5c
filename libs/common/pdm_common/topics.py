"""Every Kafka topic name of the platform, in one place.

Names follow `pdm.<domain>.<event>.v<major>`; a breaking schema change is a new major.
Each consumed topic has a `.retry` and a `.dlq` companion (see `delivery.py`).
"""

from __future__ import annotations

READINGS = "pdm.readings.v1"
READINGS_VALIDATED = "pdm.readings.validated.v1"
ASSET_COMMANDS = "pdm.asset.commands.v1"
ASSET_CONTEXT = "pdm.asset.context.v1"
ANOMALIES = "pdm.anomalies.v1"
ANOMALY_COMMANDS = "pdm.anomaly.commands.v1"
MODELS = "pdm.models.v1"
PREDICTIONS = "pdm.predictions.v1"
PREDICTION_REQUESTS = "pdm.prediction.requests.v1"
MAINTENANCE_COMMANDS = "pdm.maintenance.commands.v1"
MAINTENANCE_EVENTS = "pdm.maintenance.events.v1"
DRIFT = "pdm.drift.v1"
DRIFT_COMMANDS = "pdm.drift.commands.v1"
SIMULATOR_COMMANDS = "pdm.simulator.commands.v1"
SIMULATOR_TRUTH = "pdm.simulator.truth.v1"

RETRY_SUFFIX = ".retry"
DLQ_SUFFIX = ".dlq"

#: Topics that are consumed and therefore get retry and dead-letter companions.
CONSUMED = (
    READINGS,
    READINGS_VALIDATED,
    ASSET_COMMANDS,
    ASSET_CONTEXT,
    ANOMALIES,
    ANOMALY_COMMANDS,
    MODELS,
    PREDICTION_REQUESTS,
    PREDICTIONS,
    MAINTENANCE_COMMANDS,
    MAINTENANCE_EVENTS,
    DRIFT_COMMANDS,
    SIMULATOR_COMMANDS,
    SIMULATOR_TRUTH,  # consumed by the drift service (outcome labels)
)
PRODUCED_ONLY = (DRIFT,)


def retry_topic(topic: str) -> str:
    return topic + RETRY_SUFFIX


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def all_topics() -> list[str]:
    """Every topic the platform uses, companions included (for `pdm topics ensure`)."""
    names: list[str] = []
    for topic in CONSUMED:
        names += [topic, retry_topic(topic), dlq_topic(topic)]
    names += list(PRODUCED_ONLY)
    return names
