"""Asset commands in ingest: validation, decisions, SQL, and the processor (with an in-memory
store and publisher; the database and broker path is tests/integration/test_asset_commands.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pdm_common.delivery import Delivery, ReliableBatchHandler
from pdm_common.events import AssetCommand, AssetCommandResult, AssetRecord
from pdm_common.request_reply import reply_headers, reply_outgoing, reply_to
from pdm_ingest import SERVICE
from pdm_ingest.commands import (
    Malformed,
    Outcome,
    ResultMemo,
    Write,
    decode_command,
    done,
    plan,
    statement,
)
from pdm_ingest.handlers import AssetCommandsProcessor
from pdm_ingest.storage import ASSET_CACHE_MAX_AGE_S, ReadingStore
from tests import factories
from tests.factories import TIMESTAMP_MS, FakePublisher

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
TOPIC = "pdm.asset.commands.v1"


def command(
    action: str, asset_id: str = "pump-1", actor: str = "op-anna", **fields
) -> AssetCommand:
    body: dict = {"action": action, "asset_id": asset_id, "actor": actor}
    if fields:
        body["fields"] = fields
    return AssetCommand.model_validate(body)


def record(asset_id: str = "pump-1", registered_by: str = "op-anna", **columns) -> AssetRecord:
    return AssetRecord(
        asset_id=asset_id, registered_by=registered_by, created_at=T0, updated_at=T0, **columns
    )


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_a_valid_command_decodes() -> None:
    raw = json.dumps(
        {
            "action": "create",
            "asset_id": "pump-001",
            "actor": "op-anna",
            "fields": {"asset_type": "pump", "criticality": "high", "metadata": {"kW": 15}},
        }
    ).encode()
    decoded = decode_command(raw)
    assert isinstance(decoded, AssetCommand) and isinstance(decoded.command_id, uuid.UUID)
    assert decoded.fields is not None and decoded.fields.metadata == {"kW": 15}


@pytest.mark.parametrize(
    ("raw", "reason", "error"),
    [
        (b'{"action": "create", ', "undecodable", "not JSON"),
        (b"", "undecodable", "not JSON"),
        (b"\xff\xfe\xfa", "undecodable", "not JSON"),
        (b"[1, 2]", "undecodable", "a command is a JSON object"),
        (b'{"action": "create", "asset_id": "pump-1"}', "invalid", "actor: Field required"),
        (b'{"action": "explode", "asset_id": "pump-1", "actor": "a"}', "invalid", "action"),
        (b'{"action": "create", "asset_id": "bad id!", "actor": "a"}', "invalid", "asset_id"),
        (
            b'{"action": "create", "asset_id": "p", "actor": "a", "fields": {"criticality": "meh"}}',
            "invalid",
            "fields.criticality",
        ),
        (
            b'{"action": "create", "asset_id": "p", "actor": "a", "fields": {"colour": "red"}}',
            "invalid",
            "fields.colour: Extra inputs are not permitted",
        ),
        (b'{"action": "create", "asset_id": "p", "actor": "auto"}', "invalid", "reserved"),
        (b'{"action": "update", "asset_id": "p", "actor": "a"}', "invalid", "at least one"),
        (b'{"action": "update", "asset_id": "p", "actor": "a", "fields": {}}', "invalid", "one"),
        (
            b'{"action": "delete", "asset_id": "p", "actor": "a", "fields": {"site": "x"}}',
            "invalid",
            "a delete takes no fields (got site)",
        ),
        (
            b'{"action": "create", "asset_id": "p", "actor": "a", "fields": {"metadata": {"x": NaN}}}',
            "invalid",
            "NaN",
        ),
    ],
)
def test_malformed_commands_name_the_problem(raw: bytes, reason: str, error: str) -> None:
    decoded = decode_command(raw)
    assert isinstance(decoded, Malformed)
    assert decoded.reason == reason and error in decoded.error, decoded.error


def test_metadata_is_bounded_by_its_encoded_size() -> None:
    fits = {"notes": "x" * (16 * 1024 - 20)}
    too_big = {"notes": "é" * 9000}  # 9,000 characters but 18,000 bytes in UTF-8
    ok = {"action": "update", "asset_id": "p", "actor": "a", "fields": {"metadata": fits}}
    assert isinstance(decode_command(json.dumps(ok).encode()), AssetCommand)
    big = ok | {"fields": {"metadata": too_big}}
    decoded = decode_command(json.dumps(big, ensure_ascii=False).encode())
    assert isinstance(decoded, Malformed)
    assert decoded.error == "fields.metadata: 18012 bytes encoded; the limit is 16384"


def test_a_command_without_an_id_gets_one_from_where_it_was_published() -> None:
    processor = AssetCommandsProcessor(None, None)
    raw = b'{"action": "delete", "asset_id": "pump-1", "actor": "a"}'
    first = processor.decode(
        factories.delivery(raw, topic=TOPIC, partition=2, offset=41, key="pump-1")
    )
    again = processor.decode(
        factories.delivery(raw, topic=TOPIC, partition=2, offset=41, key="pump-1")
    )
    retried = processor.decode(
        factories.delivery(
            raw,
            topic=f"{TOPIC}.retry",
            offset=7,
            key="pump-1",
            headers={
                "pdm-original-topic": TOPIC,
                "pdm-original-partition": "2",
                "pdm-original-offset": "41",
            },
        )
    )
    other = processor.decode(
        factories.delivery(raw, topic=TOPIC, partition=2, offset=42, key="pump-1")
    )
    assert isinstance(first, AssetCommand) and isinstance(other, AssetCommand)
    assert first == again == retried and other.command_id != first.command_id
    explicit = str(uuid.uuid4())
    named = processor.decode(
        factories.delivery(
            raw.replace(b"{", b'{"command_id": "%s", ' % explicit.encode()),
            topic=TOPIC,
            partition=2,
            offset=41,
        )
    )
    assert isinstance(named, AssetCommand) and str(named.command_id) == explicit


def test_an_invalid_command_echoes_what_could_be_read() -> None:
    cid = str(uuid.uuid4())
    raw = json.dumps({"command_id": cid, "action": "update", "asset_id": "pump-1", "actor": ""})
    decoded = decode_command(raw.encode())
    assert isinstance(decoded, Malformed) and decoded.error.startswith("actor:")
    assert (str(decoded.command_id), decoded.asset_id, decoded.action) == (cid, "pump-1", "update")
    junk = decode_command(b'{"command_id": "nope", "action": 3, "asset_id": "bad id!"}')
    assert isinstance(junk, Malformed)
    assert (junk.command_id, junk.asset_id, junk.action) == (None, None, None)


# --------------------------------------------------------------------------------------------
# Decisions and SQL
# --------------------------------------------------------------------------------------------


def test_create_inserts_takes_over_auto_rows_and_conflicts_with_owned_ones() -> None:
    create = command("create", site="plant-1", asset_type="pump")
    assert plan(create, None) == Write(
        "insert", "created", {"asset_type": "pump", "site": "plant-1"}
    )
    assert plan(create, record(registered_by="auto", asset_type="pump")) == Write(
        "take_over", "created", {"asset_type": "pump", "site": "plant-1"}
    )
    other = plan(create, record(registered_by="op-bo", site="plant-1", asset_type="pump"))
    assert isinstance(other, Outcome) and other.status == "conflict"
    assert "registered by 'op-bo'" in (other.message or "") and other.asset is not None


def test_a_repeated_create_answers_created_only_when_the_row_is_what_it_asks() -> None:
    create = command("create", site="plant-1", metadata={"kW": 15})
    same = record(site="plant-1", metadata={"kW": 15}, line="L2")  # extra fields: still it
    repeat = plan(create, same)
    assert isinstance(repeat, Outcome) and repeat.status == "created" and repeat.asset == same
    changed = plan(create, record(site="plant-2", metadata={"kW": 15}))
    assert isinstance(changed, Outcome) and changed.status == "conflict"
    other_actor = plan(command("create", actor="op-bo", site="plant-1", metadata={"kW": 15}), same)
    assert isinstance(other_actor, Outcome) and other_actor.status == "conflict"


def test_update_and_delete_need_the_asset() -> None:
    update = command("update", criticality="high")
    delete = command("delete")
    for c in (update, delete):
        missing = plan(c, None)
        assert isinstance(missing, Outcome) and missing.status == "not_found"
        assert missing.message == "no asset 'pump-1'" and missing.asset is None
    assert plan(update, record()) == Write("update", "updated", {"criticality": "high"})
    assert plan(update, record(registered_by="auto")) == Write(
        "update", "updated", {"criticality": "high"}
    )
    assert plan(delete, record()) == Write("delete", "deleted")
    took = done(Write("take_over", "created"), record())
    assert took.status == "created" and "took over" in (took.message or "")


def test_statements_set_only_the_given_columns() -> None:
    create = command("create", site="plant-1", metadata={"a": [1, 2]})
    sql, params = statement(plan(create, None), create)
    assert sql == (
        "INSERT INTO assets (asset_id, registered_by, site, metadata) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (asset_id) DO NOTHING RETURNING *"
    )
    assert params[:3] == ("pump-1", "op-anna", "plant-1") and params[3].obj == {"a": [1, 2]}
    bare = command("create")
    assert statement(Write("insert", "created"), bare)[0].startswith(
        "INSERT INTO assets (asset_id, registered_by) VALUES (%s, %s) "
    )
    sql, params = statement(Write("take_over", "created", {"site": "p2"}), create)
    assert sql == (
        "UPDATE assets SET registered_by = %s, site = %s, updated_at = now() "
        "WHERE asset_id = %s AND registered_by = %s RETURNING *"
    )
    assert params == ("op-anna", "p2", "pump-1", "auto")
    sql, params = statement(
        Write("update", "updated", {"line": "L1", "criticality": "low"}), create
    )
    assert sql == (
        "UPDATE assets SET updated_at = now(), line = %s, criticality = %s "
        "WHERE asset_id = %s RETURNING *"
    )
    assert params == ("L1", "low", "pump-1")
    assert statement(Write("delete", "deleted"), create) == (
        "DELETE FROM assets WHERE asset_id = %s RETURNING *",
        ("pump-1",),
    )


def test_result_memo_is_a_bounded_lru_keyed_by_the_whole_command() -> None:
    memo = ResultMemo(size=2)
    a, b, c = command("delete", "a"), command("delete", "b"), command("delete", "c")
    answers = {
        x.asset_id: AssetCommandResult(source="t", status="deleted", asset_id=x.asset_id)
        for x in (a, b, c)
    }
    memo.put(a, answers["a"])
    memo.put(b, answers["b"])
    assert memo.get(a) is answers["a"]  # a is now the most recent
    memo.put(c, answers["c"])
    assert memo.get(b) is None and memo.get(a) is answers["a"] and len(memo) == 2
    reused = AssetCommand.model_validate(a.model_dump() | {"asset_id": "z"})
    assert reused.command_id == a.command_id and memo.get(reused) is None


# --------------------------------------------------------------------------------------------
# The known-asset cache
# --------------------------------------------------------------------------------------------


def test_a_deleted_asset_is_forgotten_even_by_a_write_that_was_in_flight() -> None:
    store = ReadingStore()
    store._remember({"pump-1", "pump-2"}, store._generation)
    in_flight = store._generation  # a readings batch registering pump-1 starts
    store.forget(["pump-1"])  # the delete commits meanwhile
    store._remember({"pump-1", "pump-3"}, in_flight)
    assert store._known_assets == {"pump-2"}  # re-learnt from the database next time
    store._remember({"pump-3"}, store._generation)
    assert store._known_assets == {"pump-2", "pump-3"}


def test_the_known_asset_cache_restarts_periodically() -> None:
    store = ReadingStore()
    store._remember({"pump-1"}, store._generation)
    store._cache_started -= ASSET_CACHE_MAX_AGE_S + 1
    store._remember({"pump-2"}, store._generation)
    assert store._known_assets == {"pump-2"}


# --------------------------------------------------------------------------------------------
# Server-side request/reply helpers
# --------------------------------------------------------------------------------------------


def test_reply_helpers() -> None:
    headers = {"reply_to": "pdm.replies.x", "correlation_id": "c1", "traceparent": "00-a-b-01"}
    d = factories.delivery(b"{}", topic=TOPIC, offset=7, key="pump-1", headers=headers)
    assert reply_to(d) == "pdm.replies.x"
    assert reply_headers(d, "asset.command_result") == {
        "content-type": "application/json",
        "event_type": "asset.command_result",
        "correlation_id": "c1",
        "traceparent": "00-a-b-01",
    }
    event = AssetCommandResult(source="ingest", status="deleted")
    out = reply_outgoing(d, event)
    assert out is not None and (out.topic, out.key, out.value) == (
        "pdm.replies.x",
        b"pump-1",
        event.to_json(),
    )
    assert reply_outgoing(d, event, key=b"k2").key == b"k2"
    nobody = factories.delivery(b"{}", topic=TOPIC, offset=7, headers={"reply_to": ""})
    assert reply_to(nobody) is None and reply_outgoing(nobody, event) is None


# --------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------


class FakeStore:
    """`AssetStore` over a dict, with the same decisions (`plan`); `fail` maps a command id
    to the exception its next application raises."""

    def __init__(self) -> None:
        self.rows: dict[str, AssetRecord] = {}
        self.applied: list[uuid.UUID] = []
        self.fail: dict[uuid.UUID, Exception] = {}
        self.clock = T0

    async def apply(self, c: AssetCommand) -> Outcome:
        if c.command_id in self.fail:
            raise self.fail.pop(c.command_id)
        self.applied.append(c.command_id)
        existing = self.rows.get(c.asset_id)
        step = plan(c, existing)
        if isinstance(step, Outcome):
            return step
        self.clock += timedelta(seconds=1)
        if step.kind == "delete":
            assert existing is not None
            del self.rows[c.asset_id]
            return done(step, existing)
        row = (
            existing.model_dump()
            if existing
            else {"asset_id": c.asset_id, "created_at": self.clock}
        )
        row |= step.values | {"updated_at": self.clock}
        if step.kind in ("insert", "take_over"):
            row["registered_by"] = c.actor
        self.rows[c.asset_id] = AssetRecord.model_validate(row)
        return done(step, self.rows[c.asset_id])


def delivery(body: bytes | dict, offset: int, reply: str | None = "pdm.replies.t") -> Delivery:
    """A command as the processor receives it; answered on `reply` with correlation id c<offset>."""
    headers = {"reply_to": reply, "correlation_id": f"c{offset}"} if reply else {}
    return factories.delivery(
        body, topic=TOPIC, offset=offset, key="pump-1", headers=headers, timestamp_ms=TIMESTAMP_MS
    )


def body(c: AssetCommand) -> dict:
    return json.loads(c.model_dump_json(exclude_none=True))


def replies(publisher: FakePublisher) -> dict[str, AssetCommandResult]:
    """Replies (the broker publisher also carries DLQ letters) by correlation id."""
    return {
        o.headers["correlation_id"]: AssetCommandResult.model_validate_json(o.value)
        for o in publisher.on("pdm.replies.t")
    }


def reliable(
    processor: AssetCommandsProcessor, publisher: FakePublisher
) -> ReliableBatchHandler[AssetCommand | Malformed]:
    return factories.reliable(processor, publisher, service=SERVICE)


async def test_a_batch_of_commands_is_applied_in_order_and_answered() -> None:
    store, publisher = FakeStore(), FakePublisher()
    handler = reliable(AssetCommandsProcessor(store, publisher), publisher)
    create = command("create", asset_type="pump", site="plant-1")
    batch = [
        delivery(body(create), 0),
        delivery(body(command("create", actor="op-bo")), 1),
        delivery(body(command("update", criticality="critical")), 2),
        delivery(b'{"action": "update", "asset_id": "pump-1", "actor": "x"}', 3),
        delivery(body(command("delete")), 4),
        delivery(body(command("update", site="plant-2")), 5),
        delivery(b"not json", 6, reply=None),  # nobody to answer: dead-lettered only
    ]
    report = await handler.handle(batch)
    assert (report.processed, report.dead_lettered) == (5, 2)
    got = replies(publisher)
    assert [got[f"c{i}"].status for i in range(6)] == [
        "created",
        "conflict",
        "updated",
        "invalid",
        "deleted",
        "not_found",
    ]
    assert got["c0"].command_id == create.command_id and got["c0"].action == "create"
    assert got["c0"].asset is not None and got["c0"].asset.registered_by == "op-anna"
    assert got["c2"].asset is not None and got["c2"].asset.criticality == "critical"
    assert got["c2"].asset.site == "plant-1"  # an update patches, it does not replace
    assert got["c3"].message == "fields: an update needs at least one field to change"
    assert got["c3"].asset_id == "pump-1" and got["c4"].asset is not None  # the deleted row
    reply = next(o for o in publisher.sent if o.headers.get("correlation_id") == "c0")
    assert reply.key == b"pump-1" and reply.headers["event_type"] == "asset.command_result"
    letters = [o for o in publisher.sent if o.topic == f"{TOPIC}.dlq"]
    assert sorted(o.headers["pdm-reason"] for o in letters) == ["invalid", "undecodable"]
    assert "c3" in {o.headers.get("correlation_id") for o in letters}  # reply_to kept in the DLQ
    assert store.rows == {}


async def test_after_an_outage_mid_batch_applied_commands_are_answered_not_reapplied() -> None:
    store, publisher = FakeStore(), FakePublisher()
    processor = AssetCommandsProcessor(store, publisher)
    handler = reliable(processor, publisher)
    create, delete = command("create"), command("delete")
    update = command("update", site="plant-3")
    store.fail[update.command_id] = psycopg.OperationalError("connection refused")
    batch = [delivery(body(c), i) for i, c in enumerate((create, update, delete))]
    report = await handler.handle(batch)
    assert report.pauses == 1 and report.processed == 3
    assert store.applied == [create.command_id, update.command_id, delete.command_id]
    got = replies(publisher)
    assert [got[f"c{i}"].status for i in range(3)] == ["created", "updated", "deleted"]
    # A redelivery (e.g. offsets not committed before a rebalance): the same answers, the
    # same events, nothing applied again, though the asset is gone.
    publisher.sent.clear()
    await handler.handle(batch)
    again = replies(publisher)
    assert [again[f"c{i}"].event_id for i in range(3)] == [got[f"c{i}"].event_id for i in range(3)]
    assert len(store.applied) == 3


async def test_a_command_the_database_refuses_is_answered_invalid_and_dead_lettered() -> None:
    store, publisher = FakeStore(), FakePublisher()
    handler = reliable(AssetCommandsProcessor(store, publisher), publisher)
    bad, good = command("create", "p-0", display_name="a\x00b"), command("create", "p-1")
    store.fail[bad.command_id] = psycopg.errors.UntranslatableCharacter("NUL not allowed")
    report = await handler.handle([delivery(body(bad), 0), delivery(body(good), 1)])
    assert (report.processed, report.dead_lettered) == (1, 1)
    got = replies(publisher)
    assert got["c0"].status == "invalid" and "database refused" in (got["c0"].message or "")
    assert got["c1"].status == "created"
    [letter] = [o for o in publisher.sent if o.topic.endswith(".dlq")]
    assert letter.headers["pdm-reason"] == "rejected_by_database"
    # Not remembered: once fixed, a replay of the dead letter applies it.
    await handler.handle([delivery(body(bad), 0)])
    assert replies(publisher)["c0"].status == "created"


async def test_an_undeliverable_reply_does_not_fail_the_batch() -> None:
    store = FakeStore()
    processor = AssetCommandsProcessor(
        store, FakePublisher.down(ConnectionError("reply topic gone"))
    )
    failures = await processor.process([(delivery(b"{}", 0), command("create"))])
    assert failures == [] and "pump-1" in store.rows
