"""Logs, traces and metrics, configured the same way in every service.

* structlog JSON logs carrying `service`, `correlation_id` (bound per message) and the
  current OpenTelemetry `trace_id`/`span_id`.
* OpenTelemetry tracing: FastStream's Kafka middleware carries W3C trace context in headers,
  so a trace continues across Kafka hops; spans go nowhere unless `PDM_OTEL_EXPORTER` says so.
* Prometheus metrics in one registry, served at `/metrics` by each service.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
#: W3C trace-context headers: kept on derived messages so a trace continues across hops.
TRACE_HEADERS = ("traceparent", "tracestate")


class _Metrics:
    """The platform's own metrics (FastStream's middleware adds per-topic ones)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "pdm_messages_total",
            "Consumed messages by outcome (ok, retry, dlq).",
            ["service", "topic", "outcome"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "pdm_batch_seconds",
            "Wall time to handle one consumed batch, commit included.",
            ["service", "topic"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.batch_size = Histogram(
            "pdm_batch_size",
            "Messages per consumed batch.",
            ["service", "topic"],
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "pdm_consumer_lag",
            "Messages behind the partition high-water mark after the last batch.",
            ["service", "topic", "partition"],
            registry=registry,
        )
        self.paused = Gauge(
            "pdm_consumer_paused",
            "1 while a consumer is paused because a dependency (database, broker) is down.",
            ["service"],
            registry=registry,
        )
        self.rows_written = Counter(
            "pdm_rows_written_total",
            "Rows inserted (duplicates excluded).",
            ["service", "table"],
            registry=registry,
        )
        self.alarm_events = Counter(
            "pdm_alarm_events_total",
            "Alarm events published, by type.",
            ["service", "event_type"],
            registry=registry,
        )
        self.model_in_use = Gauge(
            "pdm_model_in_use",
            "1 for the registry model version a service serves (0 once replaced).",
            ["service", "model", "version"],
            registry=registry,
        )
        self.warmup_readings = Counter(
            "pdm_warmup_readings_total",
            "Stored readings replayed into detectors to warm them up.",
            ["service"],
            registry=registry,
        )
        self.rows_duplicate = Counter(
            "pdm_rows_duplicate_total",
            "Rows skipped because the natural key already existed.",
            ["service", "table"],
            registry=registry,
        )


metrics = _Metrics(REGISTRY)


def _add_trace_context(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """structlog for our code and the stdlib loggers (FastStream, aiokafka, psycopg) alike."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_context,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.bind_contextvars(service=service)


@contextmanager
def continue_trace(headers: dict[str, str], name: str) -> Iterator[None]:
    """Run the block in a producer span parented on the message's W3C trace context, if any.

    A batch consumer's own span only *links* the messages it consumed (OpenTelemetry's batch
    convention); a message derived from one input message should continue that message's trace.
    """
    if "traceparent" not in headers:
        yield
        return
    ctx = propagate.extract({k: headers[k] for k in TRACE_HEADERS if k in headers})
    with trace.get_tracer("pdm").start_as_current_span(name, context=ctx, kind=SpanKind.PRODUCER):
        yield


def configure_tracing(service: str, exporter: str = "none") -> trace.TracerProvider:
    """A tracer provider for FastStream's telemetry middleware; exporting is opt-in."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": f"pdm-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
