"""Settings shared by every service and the `pdm` CLI.

Every value is an environment variable with the `PDM_` prefix and a documented default.
`pdm stack up` writes the connection settings of the embedded stack to `.pdm/stack.env`;
that file is read as a fallback, so real environment variables always win.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where the embedded stack keeps its state and writes its connection settings.
STATE_DIR = Path(os.environ.get("PDM_STATE_DIR", ".pdm"))
STACK_ENV_FILE = STATE_DIR / "stack.env"


class CommonSettings(BaseSettings):
    """Connection and reliability settings every service uses."""

    model_config = SettingsConfigDict(
        env_prefix="PDM_", env_file=str(STACK_ENV_FILE), extra="ignore"
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    kafka_idempotent_producer: bool = Field(
        False,
        description="Enable the idempotent producer. Keep off for the embedded tansu broker, "
        "which lacks InitProducerId; turn on against Apache Kafka.",
    )
    kafka_partitions: int = Field(
        3, ge=1, description="Partitions for topics the platform creates itself."
    )
    kafka_max_message_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest Kafka message the platform produces or fetches (bytes).",
    )
    kafka_fetch_max_wait_ms: int = Field(
        20,
        ge=0,
        description="Longest a consumer's fetch waits at the broker for data; bounds the "
        "latency a quiet topic adds (the embedded broker holds a fetch for this long).",
    )
    kafka_relaxed_fetch_max_wait_ms: int = Field(
        1000,
        ge=0,
        description="Fetch wait of the topics where a second of delivery latency does not "
        "matter (every `.retry` topic, model announcements, simulator truth, maintenance "
        "events, alarms and predictions to the scheduler): fewer idle polls of the broker.",
    )
    database_url: str = Field(
        "postgresql://pdm@127.0.0.1:5432/pdm", description="PostgreSQL connection URL."
    )
    database_pool_size: int = Field(4, ge=1, description="Connections per service process.")
    database_statement_timeout_ms: int = Field(
        30_000,
        ge=0,
        description="Statement timeout of service connections (0 = none); a statement that "
        "exceeds it fails as a transient error instead of hanging a consumer.",
    )
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", description="MLflow tracking server and model registry."
    )
    retry_in_process_attempts: int = Field(
        3,
        ge=1,
        description="Tries of a transiently failing batch inside the consumer before its "
        "messages go to `<topic>.retry`.",
    )
    retry_topic_attempts: int = Field(
        5,
        ge=1,
        description="Deliveries through `<topic>.retry` before a message goes to `<topic>.dlq`.",
    )
    retry_backoff_initial_s: float = Field(
        0.2, gt=0, description="First back-off delay; doubles per attempt, with jitter."
    )
    retry_backoff_max_s: float = Field(30.0, gt=0, description="Cap of the back-off delay.")
    retry_pause_max_s: float = Field(
        5.0,
        gt=0,
        description="Longest wait between two checks while a consumer is paused because the "
        "database or broker is down (how soon it resumes after they are back).",
    )
    log_level: str = Field("INFO", description="Log level of every service.")
    log_format: Literal["json", "console"] = Field(
        "json", description="`json` for machines, `console` for humans."
    )
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none",
        description="Where OpenTelemetry spans go; `otlp` uses the standard "
        "OTEL_EXPORTER_OTLP_* variables.",
    )


class ServiceSettings(BaseSettings):
    """Base of each service's own settings (`PDM_<SERVICE>_*`, declared by the subclass's
    `env_prefix`): like `CommonSettings`, real environment variables win over `stack.env`."""

    model_config = SettingsConfigDict(env_file=str(STACK_ENV_FILE), extra="ignore")

    #: Every service serves its probes and metrics (the gateway also its API) on this port;
    #: each subclass gives its own default.
    http_port: int
