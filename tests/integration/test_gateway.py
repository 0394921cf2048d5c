"""The API gateway on the real broker and PostgreSQL, with the real ingest service behind it:
keys and scopes, rate limits, idempotent HTTP ingestion, reads, the CSV export, asset
commands by request/reply, the 504 of an unanswered prediction, and the live stream."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
import websockets

from .harness import count_rows, make_key

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def snapshot(asset: str, ts: datetime, **values: float) -> dict:
    return {"asset_id": asset, "ts": ts.isoformat(), "readings": values, "asset_type": "pump"}


async def wait_for(check, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.3)


async def test_gateway_end_to_end_with_ingest(kafka, db_url, start_service):
    reader = make_key(db_url, "read")
    writer = make_key(db_url, "read,write")
    admin = make_key(db_url, "admin")
    slow = make_key(db_url, "read", "--rate-limit", "1")
    start_service("ingest")
    gateway = start_service(
        "gateway",
        PDM_GATEWAY_KEY_CACHE_S="0",
        PDM_GATEWAY_REPLY_TIMEOUT_S="2",
        PDM_GATEWAY_MAX_BODY_BYTES="100000",
        PDM_GATEWAY_EXPORT_CHUNK_ROWS="100",
        PDM_GATEWAY_RATE_LIMIT_BURST_S="2",
    )
    base = f"http://127.0.0.1:{gateway.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        # --- open probes and docs; everything else needs a key with the right scope -------
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).json()["ready"] is True
        assert "pdm_gateway_stream_clients" in (await http.get("/metrics")).text
        assert "pdm.readings.v1" in (await http.get("/asyncapi.json")).json()["channels"]
        assert "/v1/readings" in (await http.get("/openapi.json")).json()["paths"]
        no_key = await http.get("/v1/assets")
        assert no_key.status_code == 401
        assert no_key.headers["content-type"] == PROBLEM
        assert no_key.headers["www-authenticate"].startswith("Bearer")
        assert "pdm apikey create" in no_key.json()["detail"]
        forged = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
        assert (await http.get("/v1/assets", headers=bearer(forged))).status_code == 401
        assert (await http.get("/v1/assets", headers={"X-API-Key": "nonsense"})).status_code == 401
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        body = [
            snapshot("pump-a", t0 + timedelta(seconds=i), temperature=60.0 + i) for i in range(5)
        ]
        denied = await http.post("/v1/readings", json=body, headers=bearer(reader))
        assert denied.status_code == 403
        assert "'write' scope" in denied.json()["detail"]
        assert (await http.get("/v1/apikeys", headers=bearer(writer))).status_code == 403

        # --- HTTP ingestion: validated, idempotent, size-limited ---------------------------
        headers = bearer(writer) | {"Idempotency-Key": "batch-1"}
        first = await http.post("/v1/readings", json=body, headers=headers)
        assert first.status_code == 202, first.text
        assert first.json() | {"replayed": False} == {
            "status": "accepted",
            "messages": 5,
            "readings": 5,
            "idempotency_key": "batch-1",
            "replayed": False,
        }
        again = await http.post("/v1/readings", json=body, headers=headers)
        assert again.status_code == 202 and again.json()["replayed"] is True
        other = await http.post("/v1/readings", json=body[:2], headers=headers)
        assert other.status_code == 422
        assert other.json()["type"].endswith("idempotency-mismatch")
        bad = await http.post(
            "/v1/readings",
            json=[{"asset_id": "pump-a", "ts": "2026-01-01T00:00:00", "readings": {"t": 1.0}}],
            headers=bearer(writer),
        )
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["loc"] == [0, "ts"]
        huge = await http.post(
            "/v1/readings", content=b"[" + b" " * 150_000 + b"]", headers=bearer(writer)
        )
        assert huge.status_code == 413 and huge.headers["content-type"] == PROBLEM
        await wait_for(
            lambda: asyncio.to_thread(count_rows, db_url, "asset_id = 'pump-a'"),
            what="readings stored",
        )
        await asyncio.sleep(1.0)  # a second publish, had there been one, would land by now
        assert count_rows(db_url, "asset_id = 'pump-a'") == 5  # stored once
        with psycopg.connect(db_url) as conn:
            audit = conn.execute(
                "SELECT method, path, status FROM audit_log WHERE path = '/v1/readings' ORDER BY id"
            ).fetchall()
        assert [a[2] for a in audit] == [403, 202, 202, 422, 422, 413]

        # --- reads: latest, raw pages, buckets ---------------------------------------------
        latest = await http.get("/v1/assets/pump-a/readings/latest", headers=bearer(reader))
        assert latest.status_code == 200
        assert latest.json()["readings"]["temperature"]["value"] == 64.0
        cached = await http.get("/v1/assets/pump-a/readings/latest", headers=bearer(reader))
        assert cached.json()["source"] == "cache"
        window = {
            "from": (t0 - timedelta(minutes=1)).isoformat(),
            "to": datetime.now(UTC).isoformat(),
        }
        page1 = (
            await http.get(
                "/v1/assets/pump-a/readings", params=window | {"limit": 3}, headers=bearer(reader)
            )
        ).json()
        assert [r["value"] for r in page1["items"]] == [60.0, 61.0, 62.0]
        page2 = (
            await http.get(
                "/v1/assets/pump-a/readings",
                params=window | {"limit": 3, "cursor": page1["next_cursor"]},
                headers=bearer(reader),
            )
        ).json()
        assert [r["value"] for r in page2["items"]] == [63.0, 64.0]
        assert page2["next_cursor"] is None
        buckets = (
            await http.get(
                "/v1/assets/pump-a/readings",
                params=window | {"bucket": "1h", "agg": "max"},
                headers=bearer(reader),
            )
        ).json()
        assert {b["value"] for b in buckets["items"]} <= {62.0, 64.0}
        assert max(b["value"] for b in buckets["items"]) == 64.0
        assert buckets["source"] == "readings"  # the range cuts hours: only raw rows answer
        naive = await http.get(
            "/v1/assets/pump-a/readings", params={"from": "2026-01-01T00:00:00"},
            headers=bearer(reader),
        )  # fmt: skip
        assert naive.status_code == 422 and "UTC offset" in naive.json()["detail"]
        junk = await http.get(
            "/v1/assets/pump-a/readings", params={"cursor": "%%%"}, headers=bearer(reader)
        )
        assert junk.status_code == 400
        missing = await http.get("/v1/assets/nobody/readings/latest", headers=bearer(reader))
        assert missing.status_code == 404

        # --- CSV export: full, then incremental by cursor ----------------------------------
        more = [
            snapshot("pump-b", t0 + timedelta(seconds=i), vibration=float(i)) for i in range(250)
        ]
        assert (
            await http.post("/v1/readings", json=more, headers=bearer(writer))
        ).status_code == 202
        await wait_for(
            lambda: asyncio.to_thread(lambda: count_rows(db_url) == 255), what="255 rows"
        )
        full = await http.get("/v1/readings/export.csv", headers=bearer(reader))
        assert full.status_code == 200 and full.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(full.text)))
        assert rows[0] == ["time", "asset_id", "sensor", "value"]
        assert len(rows) == 256
        cursor = full.headers["x-next-cursor"]
        late = snapshot("pump-b", datetime.now(UTC) - timedelta(seconds=1), vibration=999.0)
        assert (
            await http.post("/v1/readings", json=late, headers=bearer(writer))
        ).status_code == 202
        await wait_for(lambda: asyncio.to_thread(lambda: count_rows(db_url) == 256), what="256")
        nothing_yet = await http.get(
            "/v1/readings/export.csv", params={"cursor": cursor}, headers=bearer(reader)
        )  # the new reading is younger than the settle time: not exported yet
        assert nothing_yet.status_code in (200, 422)
        await asyncio.sleep(5.5)
        incremental = await http.get(
            "/v1/readings/export.csv", params={"cursor": cursor}, headers=bearer(reader)
        )
        inc_rows = list(csv.reader(io.StringIO(incremental.text)))
        assert [r[1:] for r in inc_rows[1:]] == [["pump-b", "vibration", "999.0"]]

        # --- assets: commands to ingest by request/reply -----------------------------------
        # /ready does not wait for ingest's asset-command consumer to join its group: the
        # first command may time out (the short 2 s timeout of this test); a retried create
        # of the same asset by the same key is answered `created` again.
        for _ in range(30):
            created = await http.post(
                "/v1/assets",
                json={"asset_id": "press-1", "site": "plant-a", "line": "l1",
                      "asset_type": "motor", "criticality": "high"},
                headers=bearer(writer),
            )  # fmt: skip
            if created.status_code != 504:
                break
        assert created.status_code == 201, created.text
        assert created.json()["registered_by"] == "t-read,write"
        clash = await http.post(
            "/v1/assets", json={"asset_id": "press-1", "site": "x"}, headers=bearer(writer)
        )
        assert clash.status_code == 409 and clash.headers["content-type"] == PROBLEM
        patched = await http.patch(
            "/v1/assets/press-1", json={"display_name": "Press 1"}, headers=bearer(writer)
        )
        assert patched.status_code == 200 and patched.json()["display_name"] == "Press 1"
        assert patched.json()["site"] == "plant-a"
        typo = await http.patch("/v1/assets/press-1", json={"sight": "x"}, headers=bearer(writer))
        assert typo.status_code == 422
        listed = (await http.get("/v1/assets", params={"limit": 2}, headers=bearer(reader))).json()
        assert [a["asset_id"] for a in listed["items"]] == ["press-1", "pump-a"]
        rest = (
            await http.get(
                "/v1/assets", params={"limit": 2, "cursor": listed["next_cursor"]},
                headers=bearer(reader),
            )
        ).json()  # fmt: skip
        assert [a["asset_id"] for a in rest["items"]] == ["pump-b"]
        tree = (await http.get("/v1/hierarchy", headers=bearer(reader))).json()
        assert tree[0]["site"] == "plant-a" and tree[0]["lines"][0]["asset_types"] == {"motor": 1}
        gone = await http.delete("/v1/assets/press-1", headers=bearer(writer))
        assert gone.status_code == 200
        assert (await http.get("/v1/assets/press-1", headers=bearer(reader))).status_code == 404
        assert (
            await http.patch("/v1/assets/press-1", json={"site": "y"}, headers=bearer(writer))
        ).status_code == 404

        # --- alarms and predictions --------------------------------------------------------
        assert (await http.get("/v1/alarms", headers=bearer(reader))).json()["items"] == []
        ack = await http.post(
            "/v1/alarms/00000000-0000-4000-8000-000000000000/acknowledge",
            json={},
            headers=bearer(writer),
        )
        assert ack.status_code == 404
        no_service = await http.post(
            "/v1/predict", json={"asset_id": "pump-a", "asset_type": "pump"}, headers=bearer(reader)
        )  # no prediction service runs here
        assert no_service.status_code == 504
        assert "prediction service" in no_service.json()["detail"]
        assert (
            await http.get("/v1/assets/pump-a/predictions/latest", headers=bearer(reader))
        ).status_code == 404

        # --- live stream: filtered by asset ------------------------------------------------
        ws_url = f"ws://127.0.0.1:{gateway.port}/v1/stream?asset_id=pump-c&types=reading"
        async with websockets.connect(ws_url + f"&api_key={reader}") as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "subscribed" and hello["asset_id"] == ["pump-c"]
            now = datetime.now(UTC)
            mixed = [
                snapshot("pump-d", now, temperature=1.0),
                snapshot("pump-c", now, temperature=2.0),
            ]
            await http.post("/v1/readings", json=mixed, headers=bearer(writer))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert frame["type"] == "reading" and frame["asset_id"] == "pump-c"
            assert frame["event"]["snapshots"][0]["readings"] == {"temperature": 2.0}
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(ws_url):  # no key: refused before the upgrade
                pass

        # --- rate limit, then revocation ---------------------------------------------------
        statuses = [
            (await http.get("/v1/assets", headers=bearer(slow))).status_code for _ in range(4)
        ]
        assert statuses[:2] == [200, 200] and statuses[-1] == 429
        limited = await http.get("/v1/assets", headers=bearer(slow))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        reader_id = reader.split("_")[1]
        revoked = await http.delete(f"/v1/apikeys/{reader_id}", headers=bearer(admin))
        assert revoked.status_code == 200
        assert (await http.get("/v1/assets", headers=bearer(reader))).status_code == 401
        made = await http.post(
            "/v1/apikeys", json={"name": "svc", "scopes": ["read"]}, headers=bearer(admin)
        )
        assert made.status_code == 201
        assert (
            await http.get("/v1/assets", headers=bearer(made.json()["api_key"]))
        ).status_code == 200


async def test_stream_waits_for_topics_created_after_it_started(kafka):
    """At a fresh start the gateway's stream starts while the topics are being created: it
    must wait for them (not ready meanwhile), not read nothing forever."""
    from pdm_common import topics
    from pdm_common.broker import ensure_topics
    from pdm_gateway.stream import StreamFilter, StreamHub

    from .harness import publish

    hub = StreamHub(kafka, queue_size=10, max_dropped=0)
    client = hub.subscribe(StreamFilter.parse("pump-x", "reading"))
    hub.start()
    try:
        await asyncio.sleep(2.0)
        assert hub.connected is False  # no topics yet
        await ensure_topics(kafka, topics.all_topics(), partitions=2)
        await wait_for(lambda: asyncio.sleep(0, hub.connected), 30, "stream connected")
        event = {"event_type": "readings.validated", "asset_id": "pump-x", "snapshots": []}
        await publish(kafka, [event], topic=topics.READINGS_VALIDATED)
        frame = json.loads(await asyncio.wait_for(client.queue.get(), 20))
        assert frame["asset_id"] == "pump-x" and frame["type"] == "reading"
    finally:
        await hub.stop()
