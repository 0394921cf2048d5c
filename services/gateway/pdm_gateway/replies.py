"""The answers the gateway gets back by Kafka request/reply, each parsed once, straight from
its bytes, into the typed event it is (`Bus.call` applies one of these), so that a route
branches on a type instead of peeking into a dict and validating it again. A reply that does
not match is a `pydantic.ValidationError` (answered 500, logged), as before.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from pdm_common.drift import DriftCommandResult
from pdm_common.events import AssetCommandResult, Prediction, PredictionBatch, PredictionError
from pdm_common.maintenance import MaintenanceCommandResult

#: The prediction service's answer to one `PredictionRequest`.
PREDICTION: TypeAdapter[Prediction | PredictionError] = TypeAdapter(
    Annotated[Prediction | PredictionError, Field(discriminator="event_type")]
)
#: One part of its answer to a `PredictionBatchRequest` (an error when the batch was refused).
PREDICTION_BATCH: TypeAdapter[PredictionBatch | PredictionError] = TypeAdapter(
    Annotated[PredictionBatch | PredictionError, Field(discriminator="event_type")]
)
#: Ingest's answer to an `AssetCommand`.
ASSET_COMMAND: TypeAdapter[AssetCommandResult] = TypeAdapter(AssetCommandResult)
#: The scheduler's answer to a `MaintenanceCommand`.
MAINTENANCE_COMMAND: TypeAdapter[MaintenanceCommandResult] = TypeAdapter(MaintenanceCommandResult)
#: The drift service's answer to a `DriftCommand`.
DRIFT_COMMAND: TypeAdapter[DriftCommandResult] = TypeAdapter(DriftCommandResult)
