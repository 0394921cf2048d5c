"""The gateway's model-lifecycle API on the real stack (broker, PostgreSQL, MLflow): the
served models listed from a real registry, alias history, live performance and drift reports
over rows put straight into the drift service's tables, problems (404, 422, 429, 503 while the registry is
away), a drift command nobody answers (504 within the reply timeout), and `pdm models` /
`pdm drift` against the running gateway. The drift service itself answers the commands in
tests/integration/test_drift_service.py."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from pdm_common import registry
from pdm_ml.detectors import multivariate as mv
from pdm_tools.cli import app as cli_app
from pdm_tools.stack.processes import free_port

from .harness import ServiceProcess, make_key
from .test_gateway import bearer

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
DRIFT_TABLES = "drift_reports, model_alias_history, retrain_jobs, model_performance"
REPLY_TIMEOUT_S = 2.0


@pytest.fixture
def drift_db(db_url: str) -> str:
    """`db_url` with the drift service's tables emptied too."""
    with psycopg.connect(db_url) as conn:
        conn.execute(f"TRUNCATE {DRIFT_TABLES}")
    return db_url


def sample(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    load = rng.normal(size=n)
    return pd.DataFrame(
        {
            "flow": 50 + 12 * load + rng.normal(0, 1.0, n),
            "power": 11 + 4 * load + rng.normal(0, 0.2, n),
            "temperature": 55 + 6 * load + rng.normal(0, 0.7, n),
        }
    )


def register_two_versions(name: str, uri: str) -> tuple[str, str]:
    """A tiny anomaly model registered twice (youden_j 0.7 then 0.8); champion on the second,
    previous on the first, challenger on the second too (as a pending candidate would be)."""
    from mlflow import MlflowClient

    model = mv.fit(sample(500, 1), mv.MultivariateConfig(mcd_max_rows=500))
    reference = sample(100, 9)
    numbers = []
    for youden_j in (0.7, 0.8):
        version = registry.log_and_register(
            model,
            name=name,
            flavor="pyfunc",
            params={"detector": "robust_mahalanobis_rbc"},
            metrics={"youden_j": youden_j},
            tags={"task": "anomaly", "dataset": "synthetic", "feature_set": "snapshot:v1",
                  "asset_type": name.removeprefix("anomaly-")},
            signature_input=reference.head(5),
            signature_output=model.predict_frame(reference.head(5)),
            optional_inputs=True,
            input_example=reference.head(3),
            reference_sample=reference,
            tracking_uri=uri,
        )  # fmt: skip
        numbers.append(version.version)
    client = MlflowClient(uri, registry_uri=uri)
    client.set_registered_model_alias(name, "champion", numbers[1])
    client.set_registered_model_alias(name, "previous", numbers[0])
    client.set_registered_model_alias(name, "challenger", numbers[1])
    return numbers[0], numbers[1]


def seed(db_url: str, name: str, now: datetime) -> dict[str, Any]:
    """Three alias moves and a retrain of `name`; two feature reports (one with an Evidently
    page) and a sensors report."""
    ids: dict[str, Any] = {"changes": [], "reports": []}
    with psycopg.connect(db_url) as conn:
        for n, (alias, version, previous, actor) in enumerate(
            (("champion", "1", None, "train"), ("challenger", "2", None, "drift"),
             ("champion", "2", "1", "drift"))
        ):  # fmt: skip
            change = uuid.uuid4()
            conn.execute(
                "INSERT INTO model_alias_history (change_id, model_name, alias, version, "
                "previous_version, moved_at, actor, trigger, reason, metrics) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [change, name, alias, version, previous, now - timedelta(hours=3 - n), actor,
                 "retrain" if n else "training", f"move {n}", Jsonb({"youden_j": 0.7 + n / 10})],
            )  # fmt: skip
            ids["changes"].append(change)
        ids["job"] = uuid.uuid4()
        conn.execute(
            "INSERT INTO retrain_jobs (job_id, model_name, trigger, reason, status, claimed_by, "
            "started_at, finished_at, challenger_version, result) VALUES "
            "(%s, %s, 'drift', 'weighted share 0.4', 'finished', 'drift-1', %s, %s, '2', %s)",
            [ids["job"], name, now - timedelta(hours=2), now - timedelta(hours=1),
             Jsonb({"promoted": True, "metric": "youden_j"})],
        )  # fmt: skip
        for n, (kind, model, asset_type, drifted, html) in enumerate(
            (("features", name, "pump", True, "<html><body>evidently report</body></html>"),
             ("features", name, "pump", False, None),
             ("sensors", None, "pump", True, None))
        ):  # fmt: skip
            report = uuid.uuid4()
            columns = [{"column": "flow", "method": "wasserstein", "statistic": 0.3,
                        "threshold": 0.1, "drifted": drifted, "psi": 0.4}]  # fmt: skip
            conn.execute(
                "INSERT INTO drift_reports (report_id, kind, model_name, model_version, "
                "asset_type, trigger, window_start, window_end, reference_rows, current_rows, "
                "drifted_share, weighted_share, drift_detected, headlines, columns, html, "
                "created_at) VALUES (%s, %s, %s, '2', %s, 'timer', %s, %s, 100, 50, %s, %s, %s, "
                "%s, %s, %s, %s)",
                [report, kind, model, asset_type, now - timedelta(hours=1), now,
                 1.0 if drifted else 0.0, 0.9 if drifted else 0.0, drifted,
                 Jsonb(["flow drifted"] if drifted else []), Jsonb(columns), html,
                 now - timedelta(minutes=10 * (3 - n))],
            )  # fmt: skip
            ids["reports"].append(report)
    return ids


def seed_performance(db_url: str, name: str, now: datetime) -> list[datetime]:
    """Live performance of `name` at two checks: version 1 at the first; version 2, whole
    window and its degraded recent part, at the second. Answers the two check times."""
    earlier, newest = now - timedelta(hours=6), now
    with psycopg.connect(db_url) as conn:
        for version, span, at, precision, degraded, reason in (
            ("1", "all", earlier, 0.9, False, None),
            ("2", "all", newest, 0.8, False, None),
            ("2", "recent", newest, 0.3, True, "precision 0.30 vs 0.90 before (p=0.004)"),
        ):  # fmt: skip
            conn.execute(
                "INSERT INTO model_performance (model_name, model_version, role, span, "
                "computed_at, window_start, window_end, horizon_h, predictions, alarms, "
                "alarms_judged, true_alarms, failures, caught, precision, recall, "
                "lead_h_median, lead_h_mean, degraded, reason) VALUES (%s, %s, 'served', %s, "
                "%s, %s, %s, 72, 300, 10, 10, %s, 4, 3, %s, 0.75, 30.5, 28.0, %s, %s)",
                [name, version, span, at, at - timedelta(days=14 if span == "all" else 3), at,
                 round(10 * precision), precision, degraded, reason],
            )  # fmt: skip
    return [earlier, newest]


async def test_models_history_reports_and_problems(
    drift_db: str,
    mlflow_uri: str,
    start_service: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    name = f"anomaly-gw{uuid.uuid4().hex[:8]}"
    first, second = await asyncio.to_thread(register_two_versions, name, mlflow_uri)
    admin = make_key(drift_db, "admin")
    gateway = start_service(
        "gateway",
        PDM_GATEWAY_KEY_CACHE_S="0",
        PDM_GATEWAY_REPLY_TIMEOUT_S=str(REPLY_TIMEOUT_S),
        PDM_MLFLOW_TRACKING_URI=mlflow_uri,
    )
    base = f"http://127.0.0.1:{gateway.port}"
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=bearer(admin)) as http:
        # --- the registry: champion, challenger, previous with run metrics ---------------
        listed = await http.get("/v1/models", params={"task": "anomaly"})
        assert listed.status_code == 200, listed.text
        mine = next(m for m in listed.json()["items"] if m["name"] == name)
        assert mine["task"] == "anomaly" and mine["asset_type"] == name.removeprefix("anomaly-")
        assert mine["champion"]["version"] == second == mine["challenger"]["version"]
        assert mine["previous"]["version"] == first
        assert mine["champion"]["metrics"]["youden_j"] == pytest.approx(0.8)
        assert mine["previous"]["metrics"]["youden_j"] == pytest.approx(0.7)
        assert mine["champion"]["tags"]["dataset"] == "synthetic"
        assert mine["aliases"] == {"champion": second, "challenger": second, "previous": first}
        assert mine["latest_version"] == second
        failures = await http.get("/v1/models", params={"task": "failure"})
        assert name not in {m["name"] for m in failures.json()["items"]}

        # --- history: nothing yet is a 404; then newest first in keyset pages -------------
        none = await http.get(f"/v1/models/{name}/history")
        assert none.status_code == 404 and none.headers["content-type"] == PROBLEM
        now = datetime.now(UTC)
        ids = await asyncio.to_thread(seed, drift_db, name, now)
        page1 = (await http.get(f"/v1/models/{name}/history", params={"limit": 2})).json()
        assert [i["change_id"] for i in page1["items"]] == [
            str(c) for c in ids["changes"][::-1][:2]
        ]
        assert page1["items"][0]["previous_version"] == "1"
        assert page1["items"][0]["metrics"] == {"youden_j": pytest.approx(0.9)}
        assert page1["retrains"][0]["job_id"] == str(ids["job"])
        assert page1["retrains"][0]["result"]["promoted"] is True
        page2 = (
            await http.get(
                f"/v1/models/{name}/history", params={"limit": 2, "cursor": page1["next_cursor"]}
            )
        ).json()
        assert [i["change_id"] for i in page2["items"]] == [str(ids["changes"][0])]
        assert page2["next_cursor"] is None
        bad_name = await http.get("/v1/models/not a model/history")
        assert bad_name.status_code == 422 and bad_name.headers["content-type"] == PROBLEM

        # --- live performance: newest computation first, keyset pages, filters, 404 -------
        perf = f"/v1/models/{name}/performance"
        assert (await http.get(perf)).status_code == 404
        earlier, newest = await asyncio.to_thread(seed_performance, drift_db, name, now)
        one = (await http.get(perf, params={"limit": 2})).json()
        assert [(i["model_version"], i["span"]) for i in one["items"]] == [
            ("2", "recent"),
            ("2", "all"),
        ]
        assert one["items"][0]["degraded"] is True and "p=0.004" in one["items"][0]["reason"]
        assert one["items"][0]["precision"] == 0.3 and one["items"][0]["true_alarms"] == 3
        assert one["items"][0]["rul_mae_h"] is None and one["items"][1]["lead_h_median"] == 30.5
        assert datetime.fromisoformat(one["items"][0]["computed_at"]) == newest
        two = (await http.get(perf, params={"limit": 2, "cursor": one["next_cursor"]})).json()
        assert [i["model_version"] for i in two["items"]] == ["1"] and two["next_cursor"] is None
        assert datetime.fromisoformat(two["items"][0]["computed_at"]) == earlier
        latest = (await http.get(perf, params={"latest": "true"})).json()["items"]
        assert {(i["model_version"], i["span"]) for i in latest} == {("2", "all"), ("2", "recent")}
        whole = (await http.get(perf, params={"span": "all", "role": "served"})).json()["items"]
        assert [i["model_version"] for i in whole] == ["2", "1"]
        assert (await http.get(perf, params={"version": "1", "latest": "true"})).status_code == 404
        unknown_perf = await http.get("/v1/models/failure-nothing/performance")
        assert unknown_perf.status_code == 404 and unknown_perf.headers["content-type"] == PROBLEM
        assert "outcome labels" in unknown_perf.json()["detail"]
        assert (await http.get(perf, params={"role": "champion"})).status_code == 422

        # --- drift reports: filters, pages, detail, the Evidently page --------------------
        everything = (await http.get("/v1/drift/reports")).json()["items"]
        assert [r["report_id"] for r in everything] == [str(r) for r in ids["reports"][::-1]]
        assert "columns" not in everything[0] and "html" not in everything[0]
        drifted = (
            await http.get(
                "/v1/drift/reports",
                params={"model_name": name, "kind": "features", "drift_detected": "true"},
            )
        ).json()["items"]
        assert [r["report_id"] for r in drifted] == [str(ids["reports"][0])]
        assert drifted[0]["has_html"] is True and drifted[0]["weighted_share"] == 0.9
        sensors = (await http.get("/v1/drift/reports", params={"kind": "sensors"})).json()
        assert [r["report_id"] for r in sensors["items"]] == [str(ids["reports"][2])]
        one = (await http.get("/v1/drift/reports", params={"limit": 1})).json()
        rest = (
            await http.get("/v1/drift/reports", params={"limit": 5, "cursor": one["next_cursor"]})
        ).json()
        assert len(one["items"]) + len(rest["items"]) == 3 and rest["next_cursor"] is None
        detail = (await http.get(f"/v1/drift/reports/{ids['reports'][0]}")).json()
        assert detail["headlines"] == ["flow drifted"] and detail["columns"][0]["psi"] == 0.4
        page = await http.get(f"/v1/drift/reports/{ids['reports'][0]}/html")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "evidently report" in page.text
        no_page = await http.get(f"/v1/drift/reports/{ids['reports'][1]}/html")
        assert no_page.status_code == 404 and no_page.headers["content-type"] == PROBLEM
        missing = await http.get(f"/v1/drift/reports/{uuid.uuid4()}")
        assert missing.status_code == 404
        bad_kind = await http.get("/v1/drift/reports", params={"kind": "weights"})
        assert bad_kind.status_code == 422 and bad_kind.headers["content-type"] == PROBLEM

        # --- commands nobody answers: 504 within the reply timeout; checks limited --------
        started = time.monotonic()
        silent = await http.post(f"/v1/models/{name}/retrain", json={"reason": "test"})
        elapsed = time.monotonic() - started
        assert silent.status_code == 504 and silent.headers["content-type"] == PROBLEM
        assert REPLY_TIMEOUT_S - 0.5 < elapsed < REPLY_TIMEOUT_S + 5
        assert silent.json()["service"] == "drift service"
        bad_version = await http.post(f"/v1/models/{name}/promote", json={"version": "v2"})
        assert bad_version.status_code == 422
        check = await http.post("/v1/drift/check", json={"model_name": name})
        assert check.status_code == 504
        limited = await http.post("/v1/drift/check", json={"model_name": name})
        assert limited.status_code == 429 and limited.headers["content-type"] == PROBLEM
        assert int(limited.headers["retry-after"]) >= 1

        # --- the CLI against this gateway ---------------------------------------------------
        env = {"PDM_API_URL": base, "PDM_API_KEY": admin}
        runner = CliRunner()
        listed_cli = await asyncio.to_thread(
            runner.invoke, cli_app, ["models", "list", "--task", "anomaly"], env=env
        )
        assert listed_cli.exit_code == 0, listed_cli.output
        row = next(line for line in listed_cli.output.splitlines() if line.startswith(name))
        assert row.split()[1:4] == [second, second, first]
        history_cli = await asyncio.to_thread(
            runner.invoke, cli_app, ["models", "history", name, "--json"], env=env
        )
        assert len(json.loads(history_cli.output)["items"]) == 3
        performance_cli = await asyncio.to_thread(
            runner.invoke, cli_app, ["models", "performance", name, "--latest"], env=env
        )
        assert performance_cli.exit_code == 0, performance_cli.output
        assert "yes: precision 0.30" in performance_cli.output
        assert len(performance_cli.output.splitlines()) == 4  # title, header, two rows
        page_file = tmp_path / "report.html"
        shown = await asyncio.to_thread(
            runner.invoke,
            cli_app,
            ["drift", "show", str(ids["reports"][0]), "--html", str(page_file)],
            env=env,
        )
        assert shown.exit_code == 0 and "flow drifted" in shown.output, shown.output
        assert "evidently report" in page_file.read_text()
        unknown_cli = await asyncio.to_thread(
            runner.invoke, cli_app, ["models", "history", "rul-nothing"], env=env
        )
        assert unknown_cli.exit_code == 1 and "HTTP 404" in unknown_cli.output

    # --- a registry that is away: 503 with Retry-After, quickly ---------------------------
    away = start_service("gateway", PDM_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{away.port}", timeout=60, headers=bearer(admin)
    ) as http:
        started = time.monotonic()
        down = await http.get("/v1/models")
        assert down.status_code == 503 and down.headers["retry-after"]
        assert down.headers["content-type"] == PROBLEM and time.monotonic() - started < 10
