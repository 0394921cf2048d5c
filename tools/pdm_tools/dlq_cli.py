"""`pdm dlq list|replay TOPIC`: inspect dead letters and send them back after a fix.

Replay republishes each dead letter's original bytes and key to its original topic (delivery
headers stripped, `pdm-replayed-from` added) and records its progress in the consumer group
`pdm-dlq-replay.<topic>`, so running replay twice does not replay the same letters twice
(`--all` does, on purpose). Consumers are idempotent, so a replay is always safe.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pdm_common import topics
from pdm_common.delivery import (
    H_ERROR,
    H_FAILED_AT,
    H_FIRST_SEEN,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_REASON,
    H_REPLAYED_FROM,
    H_SERVICE,
    Delivery,
)
from pdm_common.settings import CommonSettings

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-letter topics.")


@dataclass(slots=True)
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    error: str
    service: str
    original: str
    first_seen: str
    failed_at: str
    value_preview: str

    @classmethod
    def from_delivery(cls, d: Delivery) -> DeadLetter:
        h = d.headers
        return cls(
            dlq_topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            key=d.key.decode("utf-8", "backslashreplace") if d.key is not None else None,
            reason=h.get(H_REASON, "?"),
            error=h.get(H_ERROR, ""),
            service=h.get(H_SERVICE, "?"),
            original=f"{h.get(H_ORIGINAL_TOPIC, '?')}[{h.get(H_ORIGINAL_PARTITION, '?')}]"
            f"@{h.get(H_ORIGINAL_OFFSET, '?')}",
            first_seen=h.get(H_FIRST_SEEN, ""),
            failed_at=h.get(H_FAILED_AT, ""),
            value_preview=d.value[:120].decode("utf-8", "backslashreplace"),
        )


def dlq_name(topic: str) -> str:
    """Accept either the base topic or its `.dlq` name."""
    return topic if topic.endswith(topics.DLQ_SUFFIX) else topics.dlq_topic(topic)


def _consumer(bootstrap: str, group_id: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_partition_fetch_bytes=16 << 20,
    )


async def _drain(consumer: AIOKafkaConsumer, idle_ms: int) -> list[Delivery]:
    """Read until the topic stays quiet for `idle_ms` (tansu misreports end offsets)."""
    out: list[Delivery] = []
    while True:
        batch = await consumer.getmany(timeout_ms=idle_ms, max_records=10_000)
        if not batch:
            return out
        for records in batch.values():
            out += [Delivery.from_record(r) for r in records]


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]


async def list_dead_letters(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[DeadLetter]:
    name = dlq_name(topic)
    consumer = _consumer(bootstrap, None)
    await consumer.start()
    try:
        tps = await _partitions(consumer, name)
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        letters = await _drain(consumer, idle_ms)
    finally:
        await consumer.stop()
    return [
        DeadLetter.from_delivery(d) for d in sorted(letters, key=lambda d: (d.partition, d.offset))
    ]


async def replay_dead_letters(
    bootstrap: str,
    topic: str,
    *,
    reason: str | None = None,
    replay_all: bool = False,
    dry_run: bool = False,
    idle_ms: int = 1500,
) -> list[DeadLetter]:
    """Republish dead letters to their original topic; returns the letters replayed."""
    name = dlq_name(topic)
    consumer = _consumer(bootstrap, f"pdm-dlq-replay.{name}")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=16 << 20)
    await consumer.start()
    await producer.start()
    try:
        tps = await _partitions(consumer, name)
        if not tps:
            return []
        consumer.assign(tps)
        if replay_all:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
        letters = await _drain(consumer, idle_ms)
        chosen = [d for d in letters if reason is None or d.headers.get(H_REASON) == reason]
        if dry_run:
            return [DeadLetter.from_delivery(d) for d in chosen]
        futures = [
            await producer.send(
                d.origin_topic,
                d.value,
                key=d.key,
                headers=[
                    *((k, v.encode()) for k, v in d.user_headers().items()),
                    (H_REPLAYED_FROM, f"{d.topic}:{d.partition}:{d.offset}".encode()),
                ],
            )
            for d in chosen
        ]
        await asyncio.gather(*futures)
        ends: dict[TopicPartition, int] = {}
        for d in letters:
            tp = TopicPartition(d.topic, d.partition)
            ends[tp] = max(ends.get(tp, 0), d.offset + 1)
        if ends:
            await consumer.commit(ends)
        return [DeadLetter.from_delivery(d) for d in chosen]
    finally:
        await producer.stop()
        await consumer.stop()


def _print(letters: list[DeadLetter], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([asdict(x) for x in letters], indent=2))
        return
    if not letters:
        typer.echo("no dead letters")
        return
    for x in letters:
        typer.echo(
            f"{x.dlq_topic}[{x.partition}]@{x.offset}  key={x.key}  reason={x.reason}  "
            f"service={x.service}  from={x.original}  first_seen={x.first_seen}\n"
            f"    error: {x.error}\n    value: {x.value_preview}"
        )
    typer.echo(f"{len(letters)} dead letter(s)")


Topic = Annotated[str, typer.Argument(help="Topic (e.g. pdm.readings.v1) or its .dlq name.")]


@dlq_app.command("list")
def list_cmd(
    topic: Topic,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show every dead letter of TOPIC with its reason and origin."""
    settings = CommonSettings()
    _print(
        asyncio.run(_with_hint(list_dead_letters(settings.kafka_bootstrap, topic), settings)),
        as_json,
    )


@dlq_app.command("replay")
def replay_cmd(
    topic: Topic,
    reason: Annotated[str | None, typer.Option(help="Only letters with this reason code.")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Also letters replayed before.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, do not publish.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Republish dead letters of TOPIC to the topic they came from (after a fix)."""
    settings = CommonSettings()
    letters = asyncio.run(
        _with_hint(
            replay_dead_letters(
                settings.kafka_bootstrap,
                topic,
                reason=reason,
                replay_all=replay_all,
                dry_run=dry_run,
            ),
            settings,
        )
    )
    _print(letters, as_json)
    typer.echo(("would replay" if dry_run else "replayed") + f" {len(letters)} message(s)")


async def _with_hint(coro: Any, settings: CommonSettings) -> Any:
    try:
        return await coro
    except Exception as exc:
        if "KafkaConnectionError" in type(exc).__name__ or "Unable to bootstrap" in str(exc):
            raise typer.BadParameter(
                f"cannot reach Kafka at {settings.kafka_bootstrap}: is the stack up? "
                "Run `pdm stack up` (or set PDM_KAFKA_BOOTSTRAP)."
            ) from exc
        raise
