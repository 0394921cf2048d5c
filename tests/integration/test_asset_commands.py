"""Asset commands end to end: a client's Kafka request/reply to ingest, which owns `assets`,
on the real broker and PostgreSQL (one test: starting a service here costs ~30 s)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pdm_common.events import AssetCommandResult
from pdm_common.request_reply import ReplyClient
from pdm_tools.dlq_cli import list_dead_letters

from .harness import count_rows, publish

pytestmark = pytest.mark.integration
COMMANDS = "pdm.asset.commands.v1"


def asset_row(db_url: str, asset_id: str) -> dict[str, Any] | None:
    with psycopg.connect(db_url) as conn:
        cur = conn.execute(
            "SELECT asset_type, site, criticality, metadata, registered_by FROM assets "
            "WHERE asset_id = %s",
            (asset_id,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    names = ("asset_type", "site", "criticality", "metadata", "registered_by")
    return dict(zip(names, row, strict=True))


def wait_for(cond, what: str, ingest, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; ingest log:\n{ingest.tail()}")


async def reading(kafka: str, asset_id: str, value: float) -> None:
    snap = {
        "asset_id": asset_id,
        "ts": datetime.now(UTC).isoformat(),
        "readings": {"vibration": value},
        "asset_type": "pump",
    }
    await publish(kafka, [snap])


async def test_asset_commands_request_reply(kafka, db_url, start_ingest):
    ingest = start_ingest()
    async with ReplyClient(kafka) as client:

        async def ask(body: dict[str, Any], timeout_s: float = 15) -> AssetCommandResult:
            try:
                [reply], _ = await client.call(
                    COMMANDS, body, key=body.get("asset_id"), timeout_s=timeout_s
                )
            except TimeoutError as exc:
                raise AssertionError(f"{exc}; ingest log:\n{ingest.tail()}") from None
            return AssetCommandResult.model_validate_json(reply)

        fields = {"asset_type": "pump", "site": "plant-1", "metadata": {"rated_kW": 15}}
        create = {"action": "create", "asset_id": "pump-100", "actor": "op-anna", "fields": fields}
        # The first call also waits for the consumer group to form.
        created = await ask(create, timeout_s=60)
        assert (created.status, created.action, created.asset_id) == (
            "created",
            "create",
            "pump-100",
        )
        assert created.asset is not None and created.asset.metadata == {"rated_kW": 15}
        assert asset_row(db_url, "pump-100") == {
            "asset_type": "pump",
            "site": "plant-1",
            "criticality": None,
            "metadata": {"rated_kW": 15},
            "registered_by": "op-anna",
        }
        assert (await ask(create)).status == "created"  # the same create again: idempotent
        conflict = await ask(create | {"actor": "op-bo"})
        assert conflict.status == "conflict" and "op-anna" in (conflict.message or "")

        update = {
            "action": "update",
            "asset_id": "pump-100",
            "actor": "op-bo",
            "fields": {"criticality": "high"},
        }
        updated = await ask(update)
        assert updated.status == "updated" and updated.asset is not None
        assert (updated.asset.criticality, updated.asset.site) == ("high", "plant-1")  # a patch
        assert updated.asset.updated_at > created.asset.updated_at

        # A reading for an unknown asset registers it `auto`; a create then takes it over.
        await reading(kafka, "pump-200", 1.0)
        wait_for(lambda: asset_row(db_url, "pump-200") is not None, "auto-registration", ingest)
        assert asset_row(db_url, "pump-200")["registered_by"] == "auto"
        takeover = await ask(
            {
                "action": "create",
                "asset_id": "pump-200",
                "actor": "op-anna",
                "fields": {"site": "plant-2"},
            }
        )
        assert takeover.status == "created" and "took over" in (takeover.message or "")
        assert asset_row(db_url, "pump-200") == {
            "asset_type": "pump",  # reported by the gateway, kept
            "site": "plant-2",
            "criticality": None,
            "metadata": {},
            "registered_by": "op-anna",
        }

        # Delete: the row goes, readings stay; the next reading registers the asset again
        # (the ingest process forgot it had seen it).
        delete = {"action": "delete", "asset_id": "pump-200", "actor": "op-anna"}
        deleted = await ask(delete)
        assert deleted.status == "deleted" and deleted.asset is not None
        assert deleted.asset.site == "plant-2" and asset_row(db_url, "pump-200") is None
        assert count_rows(db_url, "asset_id = %s", ("pump-200",)) == 1
        await reading(kafka, "pump-200", 2.0)
        wait_for(lambda: asset_row(db_url, "pump-200") is not None, "re-registration", ingest)
        assert asset_row(db_url, "pump-200")["registered_by"] == "auto"
        assert count_rows(db_url, "asset_id = %s", ("pump-200",)) == 2

        assert (await ask(delete | {"asset_id": "pump-100"})).status == "deleted"
        gone = await ask(update)
        assert gone.status == "not_found" and gone.asset is None
        assert gone.message == "no asset 'pump-100'"
        assert (await ask(delete | {"asset_id": "pump-100"})).status == "not_found"

        # Malformed: answered `invalid` with the reason, and dead-lettered.
        invalid = await ask({"action": "create", "asset_id": "pump-300", "fields": {}})
        assert invalid.status == "invalid" and invalid.message == "actor: Field required"
        assert (invalid.asset_id, invalid.action) == ("pump-300", "create")
    assert asset_row(db_url, "pump-300") is None

    letters: list = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not letters:
        letters = await list_dead_letters(kafka, COMMANDS, idle_ms=500)
    assert [(x.reason, x.error, x.service) for x in letters] == [
        ("invalid", "actor: Field required", "ingest")
    ]
    metrics = ingest.metrics()
    assert 'pdm_asset_commands_total{action="create",status="created"} 3.0' in metrics
    assert 'pdm_asset_commands_total{action="create",status="invalid"} 1.0' in metrics
    # the client's private reply topic is deleted when it closes
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        assert client.topic not in await admin.list_topics()
    finally:
        await admin.close()
