"""The README walkthrough as a test, on the real stack: simulator -> ingest -> anomaly ->
prediction -> scheduler, all driven and observed through the API gateway only.

A bearing failure injected on one pump (through `/v1/simulator/...`) must open an alarm on
that pump and none on the healthy ones, show on the live stream, and make that pump's
predicted failure probability rise above the healthy pumps'; a predictive work order then
opens by itself with a deadline from the RUL and is scheduled on a qualified technician of
the demo crew before it; completing it through the API with the failure found repairs the
simulated pump. The healthy pumps get no work order.

Then the model lifecycle closes: the completed order's finding is a label that shows in the
live performance of the champion that predicted it; a heavier duty for the pumps
(`high_load`: flow +25 %, current up, head down; `cold_environment` would do too, but its
temperatures follow with a 20-minute thermal lag) is caught by the drift service's timed
check on the sensors it moved, with a report; a retrain (asked by an operator, as auto
retrain on drift is off by default) registers a challenger, which the prediction service
shadow-scores; after its shadow period it is judged and promoted, served without a restart,
and a rollback brings the old champion back. Scaled down for CI: a 20 s drift window checked
every 10 s, a quick retrain, a 5 s shadow period (6 h by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest
import websockets

from pdm_tools.bootstrap import DEMO_CREW, seed_demo_crew

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
PUMPS = ("pump-001", "pump-002", "pump-003")
BROKEN = "pump-002"


def pdm(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


async def poll(check, timeout: float, what: str, every: float = 1.0):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(every)


async def test_walkthrough_bearing_failure_on_one_pump(kafka, db_url, mlflow_uri, start_service):
    env = {
        "PDM_KAFKA_BOOTSTRAP": kafka,
        "PDM_DATABASE_URL": db_url,
        "PDM_MLFLOW_TRACKING_URI": mlflow_uri,
    }
    pdm(env, "train", "simulated", "--asset-type", "pump", "--quick", timeout=600)
    key = pdm(env, "apikey", "create", "--name", "walkthrough", "--scopes", "admin",
              "--rate-limit", "1000", "--quiet").strip()  # fmt: skip
    common = {"PDM_MLFLOW_TRACKING_URI": mlflow_uri}
    start_service("ingest")
    start_service("anomaly", **common)
    prediction = start_service(
        "prediction", **common, PDM_PREDICTION_PERIODIC_INTERVAL_S="3600"
    )  # predictions come from requests and alarms here, not the timer
    start_service(
        "simulator",
        PDM_SIMULATOR_FLEET=json.dumps({"pump": 3}),
        PDM_SIMULATOR_RATE_HZ="5",
    )
    start_service("scheduler", PDM_SCHEDULER_REPLAN_DEBOUNCE_S="1")
    start_service(
        "drift",
        **common,
        PDM_DRIFT_WINDOW_S="20",
        PDM_DRIFT_CHECK_INTERVAL_S="10",
        PDM_DRIFT_QUICK_RETRAIN="true",
        PDM_DRIFT_RETRAIN_SEED="0",  # `pdm train --quick`'s: a tie offline, so a candidate
        PDM_DRIFT_SHADOW_PERIOD_S="5",
        PDM_DRIFT_REPORT_ROWS="300",
        PDM_DRIFT_HTML_MAX_COLUMNS="3",
        PDM_DRIFT_OUTBOX_INTERVAL_S="0.5",
    )
    await seed_demo_crew(kafka)
    gateway = start_service(
        "gateway",
        **common,  # GET /v1/models reads the registry
        PDM_GATEWAY_REPLY_TIMEOUT_S="20",
        PDM_GATEWAY_DRIFT_CHECK_PER_MIN="60",
    )
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.port}", headers=auth, timeout=30
    ) as api:

        async def reporting():  # type: ignore[no-untyped-def]
            found = [
                (await api.get(f"/v1/assets/{p}/readings/latest")).status_code == 200 for p in PUMPS
            ]
            return all(found)

        await poll(reporting, 90, "every pump reporting through ingest")

        async def champions_loaded() -> bool:  # loaded at start-up, not on the first request
            async with httpx.AsyncClient(timeout=5) as probe:
                ready = (await probe.get(f"http://127.0.0.1:{prediction.port}/ready")).json()
            return all(ready["models"].get(m) for m in ("failure-pump", "rul-pump"))

        await poll(champions_loaded, 120, "the pump champions loaded by the prediction service")

        async def predict(asset: str) -> dict:
            answer = await api.post("/v1/predict", json={"asset_id": asset, "asset_type": "pump"})
            assert answer.status_code == 200, answer.text
            return answer.json()

        # 64 snapshots of history at 5 Hz: give the history window time to fill
        await asyncio.sleep(15)
        healthy_before = {p: await predict(p) for p in PUMPS}
        for p in PUMPS:
            assert healthy_before[p]["rul_p50"] is not None
            assert healthy_before[p]["failure_probability"] < 0.5, healthy_before[p]

        stream_url = (
            f"ws://127.0.0.1:{gateway.port}/v1/stream?types=alarm&asset_id={BROKEN}&api_key={key}"
        )
        async with websockets.connect(stream_url) as ws:
            assert json.loads(await ws.recv())["type"] == "subscribed"
            injected = await api.post(
                f"/v1/simulator/assets/{BROKEN}/inject",
                json={"mode": "bearing_degradation", "severity": "critical", "ramp_s": 120},
            )
            assert injected.status_code == 202, injected.text

            async def alarm_open():  # type: ignore[no-untyped-def]
                page = (await api.get("/v1/alarms", params={"status": "open"})).json()
                return [a for a in page["items"] if a["asset_id"] == BROKEN]

            alarms = await poll(alarm_open, 120, f"an open alarm on {BROKEN}")
            assert alarms[0]["severity"] in ("major", "critical", "minor", "warning")
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert frame["type"] == "alarm" and frame["asset_id"] == BROKEN
            assert frame["event_type"].startswith("alarm.")

        await asyncio.sleep(10)  # let the failure show over the history window
        broken = await predict(BROKEN)
        healthy = [await predict(p) for p in PUMPS if p != BROKEN]
        assert broken["failure_probability"] > max(h["failure_probability"] for h in healthy)
        assert broken["failure_probability"] >= 0.5, broken
        assert all(h["failure_probability"] < 0.5 for h in healthy), healthy
        assert broken["rul_p50"] < min(h["rul_p50"] for h in healthy)
        assert broken["top_factors"], "a failing pump's prediction names its drivers"
        everyone = (await api.get("/v1/alarms")).json()["items"]
        assert {a["asset_id"] for a in everyone} == {BROKEN}, everyone

        # the alarm also triggered a stored prediction for the broken pump (trigger=alarm)
        async def alarm_prediction():  # type: ignore[no-untyped-def]
            page = (await api.get(f"/v1/assets/{BROKEN}/predictions")).json()
            return [p for p in page["items"] if p["trigger"] == "alarm"]

        await poll(alarm_prediction, 60, "an alarm-triggered prediction")

        # a predictive work order opened by itself, scheduled before its deadline on a
        # technician of the demo crew who has the skill; none for the healthy pumps
        async def scheduled_order():  # type: ignore[no-untyped-def]
            page = (await api.get("/v1/work-orders", params={"asset_id": BROKEN})).json()
            return [o for o in page["items"] if o["status"] == "scheduled"]

        [order] = await poll(scheduled_order, 120, f"a scheduled work order for {BROKEN}")
        assert order["type"] == "predictive" and order["source"] == "prediction", order
        crew = {str(t["technician_id"]): t["skills"] for t in DEMO_CREW}
        assert order["skill"] in crew[order["technician_id"]], order
        assert order["due_by"] is not None and order["scheduled_start"] <= order["due_by"], order
        for pump in PUMPS:
            if pump != BROKEN:
                page = (await api.get("/v1/work-orders", params={"asset_id": pump})).json()
                assert page["items"] == [], page

        # completing it with the failure found repairs the pump: the simulator confirms with
        # ground truth, seen on the live stream (the probability itself lags: a repaired
        # bearing stays hot for minutes, docs/models.md)
        truth_url = (
            f"ws://127.0.0.1:{gateway.port}/v1/stream?types=truth&asset_id={BROKEN}&api_key={key}"
        )
        async with websockets.connect(truth_url) as ws:
            assert json.loads(await ws.recv())["type"] == "subscribed"
            moves = f"/v1/work-orders/{order['work_order_id']}/transitions"
            started = await api.post(moves, json={"action": "start"})
            assert started.status_code == 200, started.text
            findings = {
                "failure_found": True,
                "failure_mode": "bearing_degradation",
                "cause": "bearing wear",
                "remedy": "bearing replaced",
                "actual_hours": 2.5,
            }
            done = await api.post(moves, json={"action": "complete", "findings": findings})
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "completed"
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame["event"]["event_type"] == "failure.cleared":
                    break
            assert frame["event"]["mode"] == "bearing_degradation"
        detail = (await api.get(f"/v1/work-orders/{order['work_order_id']}")).json()
        assert [t["to_status"] for t in detail["transitions"]] == [
            "open",
            "scheduled",
            "in_progress",
            "completed",
        ]

        # the finding is a label: the champion that alarmed before the failure caught it
        async def caught() -> list[dict]:
            checked = await api.post("/v1/drift/check", json={})
            assert checked.status_code in (200, 429), checked.text
            page = await api.get(
                "/v1/models/failure-pump/performance",
                params={"latest": "true", "span": "all", "role": "served"},
            )
            items = page.json()["items"] if page.status_code == 200 else []
            return [i for i in items if i["caught"] and i["failures"]]

        [live] = await poll(caught, 90, "the confirmed failure in the live performance", 5)
        assert live["recall"] > 0 and live["lead_h_median"] is not None, live
        champion = (await predict("pump-001"))["models"]["failure"]["version"]

        # a heavier duty: the timed drift check names the sensors that moved
        changed_at = time.time()
        scenario = await api.post("/v1/simulator/scenario", json={"scenario": "high_load"})
        assert scenario.status_code == 202, scenario.text

        async def duty_report() -> dict | None:
            page = await api.get(
                "/v1/drift/reports",
                params={"kind": "sensors", "asset_type": "pump", "drift_detected": "true"},
            )
            for summary in page.json()["items"]:
                created = datetime.fromisoformat(summary["created_at"]).timestamp()
                if created < changed_at:
                    continue
                report = (await api.get(f"/v1/drift/reports/{summary['report_id']}")).json()
                flow = next((c for c in report["columns"] if c["column"] == "flow"), None)
                if flow and flow["drifted"] and (flow["mean_shift"] or 0) > 15:  # 120 -> 150 m3/h
                    return report | {"seconds": created - changed_at}
            return None

        report = await poll(duty_report, 120, "a drift report on the pumps' flow", 2)
        print(f"scenario change -> drift report: {report['seconds']:.1f} s")  # docs/benchmarks.md
        assert any(line.startswith("flow: mean +") for line in report["headlines"]), report

        # an operator retrains on it; the challenger is shadow-scored, judged, promoted
        retrain = await api.post(
            "/v1/models/failure-pump/retrain",
            json={"reason": f"high_load: drift report {report['report_id']}"},
        )
        assert retrain.status_code == 202, retrain.text
        busy = await api.post("/v1/models/rul-pump/retrain", json={})  # trained together
        assert busy.status_code == 409 and "running" in busy.json()["detail"], busy.text

        async def challenger() -> str | None:
            listed = await api.get("/v1/models", params={"task": "failure"})
            assert listed.status_code == 200, listed.text
            found = listed.json()["items"]
            pump = next(m for m in found if m["name"] == "failure-pump")
            version = (pump.get("challenger") or {}).get("version")
            return version if version and version != champion else None

        candidate = await poll(challenger, 180, "a challenger registered by the retrain", 2)

        async def shadow_scored() -> list[dict]:
            for p in PUMPS:
                await predict(p)  # requests the prediction service also scores with it
            page = await api.get(
                "/v1/models/failure-pump/performance",
                params={"role": "shadow", "version": candidate},
            )
            return page.json()["items"] if page.status_code == 200 else []

        await poll(shadow_scored, 120, "shadow predictions of the challenger", 3)

        async def serving() -> bool:
            got = await predict("pump-001")
            return bool(got["models"]["failure"]["version"] == candidate)

        await poll(serving, 120, "the promoted challenger served without a restart", 2)
        history = (await api.get("/v1/models/failure-pump/history")).json()
        moved = next(h for h in history["items"] if h["alias"] == "champion")
        assert moved["version"] == candidate and moved["actor"] == "drift", moved
        assert "live_shared_requests" in moved["metrics"], moved
        assert len(moved["metrics"]) == 3, moved  # both offline scores and the live figures
        [job] = [r for r in history["retrains"] if r["challenger_version"] == candidate]
        assert job["result"]["promoted"] and job["result"]["pending"] is None, job
        assert job["result"]["live_decision"].startswith("promoted"), job
        again = await api.post("/v1/models/failure-pump/retrain", json={})
        assert again.status_code == 409 and "cooldown" in again.json()["detail"], again.text

        # and one command takes it back
        rolled = await api.post("/v1/models/failure-pump/rollback", json={"reason": "walkthrough"})
        assert rolled.status_code == 200, rolled.text

        async def restored() -> bool:
            got = await predict("pump-001")
            return bool(got["models"]["failure"]["version"] == champion)

        await poll(restored, 120, "the old champion served again after the rollback", 2)
        listed = (await api.get("/v1/models", params={"task": "failure"})).json()["items"]
        pump = next(m for m in listed if m["name"] == "failure-pump")
        assert pump["champion"]["version"] == champion, pump
        assert pump["previous"]["version"] == candidate, pump  # so the rollback can be undone
