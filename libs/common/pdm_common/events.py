"""Event contracts: the pydantic models of every message on the platform's topics.

Gateway input (`pdm.readings.v1`) is validated strictly (unknown fields are rejected, so a
gateway learns of a typo at once instead of losing a sensor silently). Events the platform
emits itself carry the envelope and evolve additively within a major version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)


def describe_validation(exc: ValidationError) -> str:
    """The first validation error as `where: what` (e.g. `requests.0.asset_type: Field
    required`): the one-line reason a DLQ header or an error reply carries."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "message"
    return f"{where}: {err['msg']}"


ASSET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SENSOR_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"

AssetId = Annotated[str, StringConstraints(pattern=ASSET_ID_PATTERN)]
SensorName = Annotated[str, StringConstraints(pattern=SENSOR_PATTERN)]
#: A finite double given as a JSON number: strings, booleans, `NaN`/`Infinity` tokens and
#: overflowing numbers are rejected rather than coerced.
SensorValue = Annotated[float, Field(allow_inf_nan=False, strict=True)]


class ReadingSnapshot(BaseModel):
    """One asset's sensor values at one instant, as an IoT gateway publishes it.

    `ts` must carry a UTC offset (or be epoch seconds/milliseconds); a naive timestamp is
    ambiguous across plants and is rejected. Units are SI unless the sensor's metadata says
    otherwise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    asset_id: AssetId
    ts: AwareDatetime
    readings: dict[SensorName, SensorValue] = Field(min_length=1)
    message_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    asset_type: Annotated[str, StringConstraints(pattern=SENSOR_PATTERN)] | None = Field(
        None, description="Used when the asset is auto-registered on first sight."
    )


#: A gateway message: one snapshot or a JSON list of them.
GatewayMessage = ReadingSnapshot | list[ReadingSnapshot]
snapshot_list_adapter: TypeAdapter[list[ReadingSnapshot]] = TypeAdapter(list[ReadingSnapshot])


def parse_gateway_message(raw: bytes) -> list[ReadingSnapshot]:
    """Parse and validate one gateway message in a single pass (pydantic's JSON parser).

    Dispatches on the first byte instead of a union so a bad message gets the error of the
    shape it has, not a confusing error per union member. Raises `pydantic.ValidationError`.
    """
    if raw.lstrip()[:1] == b"[":
        return snapshot_list_adapter.validate_json(raw)
    return [ReadingSnapshot.model_validate_json(raw)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields every platform event carries; correlation id and trace context travel in headers.

    Subclasses pin `event_type` with a `Literal` default so it is in the JSON Schema too.
    """

    model_config = ConfigDict(extra="ignore")

    event_type: str
    schema_version: int = 1
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    source: str

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class ValidatedSnapshot(BaseModel):
    ts: AwareDatetime
    readings: dict[str, float]


class ReadingsValidated(Envelope):
    """Readings of one asset that passed validation and are durably stored.

    Published after the database commit, keyed by asset id, once per asset per ingest batch.
    Delivery is at-least-once: after a crash a batch can be republished, so consumers ignore
    snapshots at or before the last timestamp they have seen for that (asset, sensor).
    """

    event_type: Literal["readings.validated"] = "readings.validated"
    asset_id: str
    asset_type: str | None = None
    snapshots: list[ValidatedSnapshot]


Severity = Literal["info", "warning", "minor", "major", "critical"]
SEVERITY_ORDER: tuple[Severity, ...] = ("info", "warning", "minor", "major", "critical")


AlarmStatus = Literal["open", "cleared"]


class AlarmFields(BaseModel):
    """What an alarm is: the one definition of its fields, wherever an alarm appears (each
    event of its life, the anomaly service's `alarms` row, the gateway's answers), so the
    event, the stored state and the HTTP schema cannot drift apart."""

    alarm_id: uuid.UUID
    asset_id: str
    asset_type: str | None = None
    condition: str = Field(
        description="e.g. `vibration:robust_z`, `temperature:limit`, `multivariate`"
    )
    severity: Severity
    detector: str
    score: float
    threshold: float
    contributors: dict[str, float] = Field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None
    opened_at: AwareDatetime
    conditions: list[str] = Field(
        default_factory=list,
        description="Flood control: every condition of the asset this one alarm stands for, "
        "the one that opened it first, then those that went into alarm within "
        "`PDM_ANOMALY_GROUP_WINDOW_S` of its opening (event time) and joined it instead of "
        "opening alarms of their own. Empty only on events from before grouping.",
    )
    sensors: list[str] = Field(
        default_factory=list,
        description="The sensors those conditions name, sorted (`multivariate` names none).",
    )


class AlarmState(AlarmFields):
    """An alarm as it stands now: one row of the anomaly service's `alarms` table (what the
    gateway reads and serves), its fields plus its lifecycle and the operators' actions."""

    status: AlarmStatus
    last_anomalous_at: AwareDatetime
    cleared_at: AwareDatetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None
    assignee: str | None = None
    assigned_by: str | None = None
    assigned_at: AwareDatetime | None = None
    updated_at: AwareDatetime


class AlarmEvent(AlarmFields, Envelope):
    """A change in an alarm's life, on `pdm.anomalies.v1` (key: asset id).

    One alarm exists per (asset, condition) at a time; `alarm_id` names it across its events.
    `reading_ts` is the time of the reading that caused the change (event time, not wall time).

    Flood control: conditions of one asset that go into alarm within the grouping window of
    an open alarm's opening join it (`conditions`, `sensors`) rather than opening their own,
    so the operator gets one alarm per incident, not one per sensor. A join is published as
    `alarm.escalated` with `joined_condition` set (the alarm now covers more; `severity` is the
    worst of its conditions). A shelved asset or sensor opens no alarm at all.
    """

    event_type: Literal[
        "alarm.opened", "alarm.escalated", "alarm.cleared", "alarm.acknowledged", "alarm.assigned"
    ]
    reading_ts: AwareDatetime | None = None
    actor: str | None = Field(None, description="Who acknowledged or assigned (commands only).")
    assignee: str | None = None
    note: str | None = None
    joined_condition: str | None = Field(
        None,
        description="On an `alarm.escalated` caused by grouping: the condition that joined.",
    )


class AlarmCommand(BaseModel):
    """A request on `pdm.anomaly.commands.v1` (key: alarm id) to acknowledge or assign."""

    model_config = ConfigDict(extra="forbid")

    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    alarm_id: uuid.UUID
    action: Literal["acknowledge", "assign"]
    actor: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    assignee: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


#: Longest a shelf may last by contract; the anomaly service may be configured shorter
#: (`PDM_ANOMALY_SHELF_MAX_HOURS`). ISA-18.2 shelving is temporary by definition.
MAX_SHELF_DURATION = timedelta(days=7)


class ShelfCommand(BaseModel):
    """A request on `pdm.anomaly.commands.v1` (key: asset id) to shelve or unshelve alarms.

    `shelve` stops new alarms of `asset_id` (of its `sensor` only, when given) from opening
    until `expires_at`, with the operator's `reason` (required): ISA-18.2 / EEMUA 191
    shelving, temporary and accountable. Suppressed occurrences are not lost: each one is
    logged, counted in `pdm_alarms_suppressed_total` and on the shelf (`suppressed`). Alarms
    already open are not affected. Shelving an already shelved target replaces its reason,
    actor and expiry. `unshelve` ends the shelf of that target at once; a shelf also ends by
    itself at `expires_at`. Coverage is by reading time, so a replay decides the same.
    Applied once per `command_id` (the new shelf's id); a malformed command, or a shelve
    whose expiry is past or too far, is dead-lettered (`invalid`).
    """

    model_config = ConfigDict(extra="forbid")

    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    action: Literal["shelve", "unshelve"]
    asset_id: AssetId
    sensor: SensorName | None = Field(None, description="Only this sensor; none: the asset.")
    actor: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = Field(
        None, description="Why (required to shelve)."
    )
    expires_at: AwareDatetime | None = Field(
        None, description="When the shelf ends by itself (required to shelve)."
    )

    @model_validator(mode="after")
    def _shelve_needs_reason_and_expiry(self) -> ShelfCommand:
        if self.action == "shelve" and (self.reason is None or not self.reason.strip()):
            raise ValueError("shelve needs a reason")
        if self.action == "shelve" and self.expires_at is None:
            raise ValueError("shelve needs expires_at")
        return self


class _CommandAction(BaseModel):
    action: Literal["acknowledge", "assign", "shelve", "unshelve"]


def parse_anomaly_command(raw: bytes) -> AlarmCommand | ShelfCommand:
    """One message of `pdm.anomaly.commands.v1`, dispatched on `action` so that a bad command
    gets the errors of the command it meant to be (or, without a known action, of that).
    Raises `pydantic.ValidationError`."""
    action = _CommandAction.model_validate_json(raw).action
    if action in ("shelve", "unshelve"):
        return ShelfCommand.model_validate_json(raw)
    return AlarmCommand.model_validate_json(raw)


class AlarmShelf(BaseModel):
    """A shelf as it stands: one row of the anomaly service's `alarm_shelves` (what the
    gateway serves). `active` while neither unshelved nor expired; `suppressed` counts the
    alarms it held back (one per episode of a condition, not per reading)."""

    shelf_id: uuid.UUID
    asset_id: str
    sensor: str | None = None
    reason: str
    shelved_by: str
    shelved_at: AwareDatetime
    expires_at: AwareDatetime
    unshelved_by: str | None = None
    unshelved_at: AwareDatetime | None = None
    suppressed: int = 0
    last_suppressed_at: AwareDatetime | None = None
    last_suppressed_condition: str | None = None
    active: bool


Criticality = Literal["low", "medium", "high", "critical"]
#: Who owns an asset row that ingest registered itself on the asset's first reading.
AUTO_REGISTERED_BY = "auto"
#: Largest `metadata` of an asset, JSON-encoded (compact, UTF-8); ingest checks it, because
#: a bound on the encoded size is what protects the table and every reply that carries it.
MAX_ASSET_METADATA_BYTES = 16 * 1024


class AssetFields(BaseModel):
    """The descriptive columns of an asset, every one optional: a create sets the ones given
    (the rest stay empty, or as they were on an asset ingest registered itself), an update
    changes only the ones given (a field cannot be set back to null). `metadata` is
    replaced as a whole, not merged, so what a client sends is what is stored; it is bounded
    to 16 KiB encoded (checked by ingest, with the size in the error)."""

    model_config = ConfigDict(extra="forbid")

    asset_type: Annotated[str, StringConstraints(pattern=SENSOR_PATTERN)] | None = Field(
        None, description="e.g. `pump`, `motor`, `milling`: routes the asset to its models."
    )
    site: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    line: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    criticality: Criticality | None = None
    machine_class: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = Field(
        None, description="e.g. an ISO 10816 class `I`..`IV` for vibration limits."
    )
    metadata: dict[str, Any] | None = Field(
        None, description="Free-form JSON object, at most 16 KiB encoded."
    )


class AssetCommand(BaseModel):
    """A request on `pdm.asset.commands.v1` (key: asset id, so one asset's commands apply in
    order) to register, change or remove an asset. Ingest owns the `assets` table and
    applies it; the answer is an `AssetCommandResult` on the `reply_to` header topic (same
    `correlation_id` header), and a malformed command is dead-lettered and, when it names a
    `reply_to`, answered `invalid`.

    * `create` inserts the asset; `conflict` if it exists already. Exception: a row ingest
      registered itself on the asset's first reading (`registered_by = "auto"`) is taken
      over: the create fills the fields it gives (the others, e.g. the `asset_type` the
      gateway reported, are kept) and the actor becomes its owner (`created`). A create that
      finds the asset owned by the same actor with every given field as it asks answers
      `created` again, so a redelivered or retried create is harmless.
    * `update` changes the given fields (at least one); `not_found` if there is no such asset.
    * `delete` removes the asset row; `not_found` if there is none. Its readings are kept
      (history is not the registry's to erase); a later reading registers it again, `auto`.

    `actor` is who asks (`auto` is reserved for ingest). A redelivered command gets the
    answer its first delivery got, while the ingest process that applied it runs.
    """

    model_config = ConfigDict(extra="forbid")

    command_id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="Names the command across redeliveries; when a message has none, ingest "
        "derives it from the message's topic, partition and offset.",
    )
    action: Literal["create", "update", "delete"]
    asset_id: AssetId
    actor: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    fields: AssetFields | None = None


class AssetRecord(BaseModel):
    """One row of `assets`, as a command's reply carries it (and the gateway serves it)."""

    asset_id: str
    asset_type: str | None = None
    site: str | None = None
    line: str | None = None
    display_name: str | None = None
    criticality: str | None = None
    machine_class: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    registered_by: str = Field(description="`auto` when ingest registered it on first reading.")
    created_at: AwareDatetime
    updated_at: AwareDatetime


AssetCommandStatus = Literal["created", "updated", "deleted", "not_found", "conflict", "invalid"]


class AssetCommandResult(Envelope):
    """The reply to an `AssetCommand` (the gateway maps `status` to HTTP: created 201,
    updated/deleted 200, not_found 404, conflict 409, invalid 422).

    `asset` is the row after the command (for `deleted`: the row as it was removed; for
    `conflict`: the row that is in the way); `message` says why for the refusals. For a
    malformed command, `command_id`, `asset_id` and `action` are echoed when they could be read.
    """

    event_type: Literal["asset.command_result"] = "asset.command_result"
    command_id: uuid.UUID | None = None
    asset_id: str | None = None
    action: Literal["create", "update", "delete"] | None = None
    status: AssetCommandStatus
    message: str | None = None
    asset: AssetRecord | None = None


class SimulatorCommand(BaseModel):
    """A request on `pdm.simulator.commands.v1` (key: asset id, if any) to steer the fleet.

    `inject` starts a failure `mode` of `severity` on `asset_id` (degrading to failure over
    `ramp_s`, default by severity); `clear` repairs it (every active failure of the asset when
    `mode` is absent); `scenario` changes the operating point
    of `asset_id` (or of every asset when it is absent); `rate` sets snapshots per second.
    Applied once per `command_id`; the resulting ground truth goes to `pdm.simulator.truth.v1`.
    """

    model_config = ConfigDict(extra="forbid")

    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    action: Literal["inject", "clear", "scenario", "rate"]
    asset_id: AssetId | None = None
    mode: (
        Literal[
            "bearing_degradation", "motor_overheating", "sensor_interference", "tool_wear",
            "seal_leak",
        ]
        | None
    ) = None  # fmt: skip
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    ramp_s: float | None = Field(None, gt=0, le=365 * 86400, description="Time to failure.")
    sensor: SensorName | None = Field(None, description="Sensor of a `sensor_interference`.")
    scenario: (
        Literal["normal", "high_load", "precision", "cold_environment", "high_speed"] | None
    ) = None
    rate_hz: float | None = Field(None, gt=0, le=100)


class GroundTruth(Envelope):
    """On `pdm.simulator.truth.v1` (key: asset id): what the simulator really did to an asset,
    for evaluating alarms and predictions (`failure.injected|failed|cleared`)."""

    event_type: Literal["failure.injected", "failure.failed", "failure.cleared"]
    asset_id: str
    asset_type: str
    mode: str
    severity: str
    injected_at: AwareDatetime
    expected_failure_at: AwareDatetime | None = None
    failed: bool = False
    is_failure: bool = Field(True, description="False for sensor faults (the machine is fine).")
    sensor: str | None = None
    cleared_at: AwareDatetime | None = None


class AssetContextChanged(Envelope):
    """On `pdm.asset.context.v1` (key: asset id): the operating context of an asset changed on
    purpose at `at` (a new operating point, a start-up, a repair or maintenance), so the readings
    from then on are a new normal that detectors re-learn instead of alarming on.

    Published by the simulator for its scenario changes and repairs; by any client for a real
    plant (a control system announcing a set-point change, a work order completed).
    """

    model_config = ConfigDict(extra="forbid")

    event_type: Literal["asset.context_changed"] = "asset.context_changed"
    asset_id: AssetId
    reason: Literal["operating_point", "start_up", "repair", "maintenance"]
    detail: str | None = Field(None, max_length=200, description="e.g. the scenario name.")
    at: AwareDatetime = Field(description="When the change took effect (event time).")


class ModelAliasMoved(Envelope):
    """On `pdm.models.v1` (key: model name): a registry alias now points at another version.

    Serving processes reload `models:/<model_name>@<alias>` when they see it.
    """

    event_type: Literal["model.alias_moved"] = "model.alias_moved"
    model_name: str
    alias: str = "champion"
    version: str
    previous_version: str | None = None
    task: str | None = None
    asset_type: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    decision: str | None = Field(None, description="Why the alias moved (or did not).")


#: Why a prediction was made: a client asked, the periodic timer, or an alarm on the asset.
Trigger = Literal["request", "periodic", "alarm"]


class PredictionRequest(BaseModel):
    """A request on `pdm.prediction.requests.v1` (key: asset id) for one asset's prediction.

    The answer goes to the topic in the request's `reply_to` Kafka header, with the same
    `correlation_id` header: a `Prediction`, or a `PredictionError` naming what is missing.
    Features come from the asset's stored `readings` unless the request carries them inline
    (`readings`: one snapshot; `history`: rows oldest first, for history-based models).
    """

    model_config = ConfigDict(extra="forbid")

    request_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    trigger: Trigger = Field(
        "request",
        description="`request` (a client), `periodic` (the service's timer) or `alarm` (an "
        "alarm opened or escalated on the asset). A periodic or alarm request that cannot be "
        "answered is counted and logged, not dead-lettered: nobody waits for it.",
    )
    asset_id: AssetId
    asset_type: Annotated[str, StringConstraints(pattern=SENSOR_PATTERN)]
    readings: dict[SensorName, SensorValue] | None = Field(
        None, description="One snapshot of sensor values to predict from (instead of stored)."
    )
    attributes: dict[SensorName, Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=dict,
        description='Non-numeric snapshot metadata, e.g. `{"quality": "L"}` for milling.',
    )
    history: list[dict[SensorName, SensorValue]] | None = Field(
        None,
        max_length=10_000,
        description="Rows of sensor values, oldest first (instead of stored history).",
    )


#: Most requests one batch may carry (`/v1/predict/batch`).
MAX_BATCH_REQUESTS = 1000


class PredictionBatchRequest(BaseModel):
    """Many assets in one message on `pdm.prediction.requests.v1` (told apart from a single
    request by its `requests` field), scored together.

    Answered on the `reply_to` topic with `PredictionBatch` parts (same `correlation_id`):
    `parts` messages that together hold one prediction or one error per request.
    """

    model_config = ConfigDict(extra="forbid")

    batch_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    requests: list[PredictionRequest] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)


class ModelRef(BaseModel):
    name: str
    version: str


class Factor(BaseModel):
    """One feature's TreeSHAP contribution (log-odds of failure) and its value."""

    feature: str
    contribution: float
    value: float | None = None


class HealthContributor(BaseModel):
    """One term of the health score: `points = weight * score` (score 0-100)."""

    name: str
    value: float
    score: float
    weight: float
    points: float


class Prediction(Envelope):
    """One asset's prediction, the reply to a request and on `pdm.predictions.v1` (key: asset).

    Parts are present when the asset type has a champion for them: `failure_*` (classifier)
    and `rul_*` (remaining useful life quantiles). `health_score` is 0-100 (100 = healthy);
    `health_formula` and `health_contributors` say how it was computed. `confidence` (0-1)
    is reduced, with `confidence_reasons`, when sensors or history are missing or stale.
    """

    event_type: Literal["prediction.made"] = "prediction.made"
    request_id: uuid.UUID | None = None
    trigger: Trigger = "request"
    asset_id: str
    asset_type: str
    as_of: AwareDatetime | None = Field(None, description="Time of the newest reading used.")
    models: dict[str, ModelRef] = Field(default_factory=dict, description="part -> model")
    failure_probability: float | None = None
    failure_horizon: str | None = None
    failure_predicted: bool | None = None
    decision_threshold: float | None = None
    failure_modes: dict[str, float] = Field(default_factory=dict)
    failure_modes_basis: str | None = None
    rul_p10: float | None = None
    rul_p50: float | None = None
    rul_p90: float | None = None
    rul_unit: str | None = None
    health_score: float
    health_formula: str
    health_contributors: list[HealthContributor] = Field(default_factory=list)
    top_factors: list[Factor] = Field(default_factory=list)
    confidence: float
    confidence_reasons: list[str] = Field(default_factory=list)


class PredictionError(Envelope):
    """The reply when a prediction cannot be made; `code` is stable, `message` says what is
    missing (e.g. which sensors) and `missing` lists the names."""

    event_type: Literal["prediction.error"] = "prediction.error"
    request_id: uuid.UUID | None = None
    asset_id: str | None = None
    asset_type: str | None = None
    code: str = Field(
        description="invalid_request | unknown_asset_type | no_champion | missing_sensors | "
        "insufficient_history | model_error"
    )
    message: str
    missing: list[str] = Field(default_factory=list)


class PredictionBatch(Envelope):
    """One part of the reply to a `PredictionBatchRequest`: parts are numbered `1..parts`
    and hold, between them, one prediction or one error per request (in request order
    within a part). Split so that no reply outgrows the broker's message size limit."""

    event_type: Literal["prediction.batch"] = "prediction.batch"
    batch_id: uuid.UUID
    part: int = Field(ge=1)
    parts: int = Field(ge=1)
    requests: int = Field(ge=1, description="Requests in the whole batch.")
    predictions: list[Prediction] = Field(default_factory=list)
    errors: list[PredictionError] = Field(default_factory=list)
