"""What every `pdm train ...` command shares: progress lines, errors that say what to do, and
the `pdm.models.v1` announcement of an alias move."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from pdm_common import registry

SOURCE = "pdm-train"


async def publish_alias_moved(bootstrap: str, event: Any, idempotent: bool) -> None:
    """Send the event on `pdm.models.v1` keyed by model name; wait for the ack."""
    from aiokafka import AIOKafkaProducer

    from pdm_common import topics
    from pdm_common.broker import ensure_topics
    from pdm_common.settings import CommonSettings

    await ensure_topics(bootstrap, [topics.MODELS], partitions=CommonSettings().kafka_partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotent,
        request_timeout_ms=10_000,
        client_id=SOURCE,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.MODELS,
            event.to_json(),
            key=event.model_name.encode(),
            headers=[("correlation_id", str(event.event_id).encode())],
        )
    finally:
        await producer.stop()


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def step(n: int, total: int, text: str) -> None:
    typer.echo(f"[{n}/{total}] {text}")


def announce_step(decision: registry.PromotionDecision, settings: Any, publish: bool) -> None:
    """The last step of every `pdm train …`: tell serving processes the alias moved."""
    if not decision.moved:
        typer.echo("  nothing to announce: the alias did not move")
    elif not publish:
        typer.echo("  skipped (--no-publish): serving reloads on restart")
    else:
        publish_decision(decision, settings)


def publish_decision(decision: registry.PromotionDecision, settings: Any) -> None:
    event = decision.to_event(SOURCE)
    try:
        asyncio.run(
            publish_alias_moved(settings.kafka_bootstrap, event, settings.kafka_idempotent_producer)
        )
    except Exception as exc:
        raise fail(
            f"the alias moved, but announcing it on Kafka at {settings.kafka_bootstrap} failed "
            f"({exc!r}). Serving keeps the old model until restart; once Kafka is up run "
            f"`pdm train announce {decision.name}`."
        ) from exc
    typer.echo(f"  published {event.event_type} {event.model_name} -> v{event.version}")
