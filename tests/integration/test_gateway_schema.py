"""Schemathesis against the gateway's own OpenAPI document, on the real stack (gateway,
ingest and scheduler processes, broker, PostgreSQL): generated requests (valid and invalid, a bounded
number per operation) never get a 5xx, and every answer matches the documented status
codes, content types and schemas.

`/v1/predict*` are left out: without a prediction service they answer the documented 504
after the reply timeout (tests/integration/test_gateway.py checks that; the end-to-end
walkthrough test checks real predictions). So are the drift service's commands
(`POST /v1/drift/check`, `/v1/models/{name}/retrain|promote|rollback`): without it they wait
for the same 504 (tests/integration/test_gateway_models.py checks it), and with it a valid
retrain would train a model. Their bodies and problems are checked in
tests/unit/pdm_gateway/test_models.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pdm_gateway.app import create_app
from pdm_tools.stack.processes import LOOPBACK, start_broker

from .harness import ServiceProcess

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(create_app().openapi()).exclude(
    path_regex=r"^/v1/(predict|drift/check$|models/[^/]+/(retrain|promote|rollback)$)"
)
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


@pytest.fixture(scope="module")
def live_gateway(
    migrated_database_url: str, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, admin key) of a gateway with ingest, the scheduler and a model registry
    behind it, for the whole module."""
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    broker = start_broker(tmp, die_with_parent=True)
    env = {
        "PDM_KAFKA_BOOTSTRAP": f"{LOOPBACK}:{broker.port}",
        "PDM_DATABASE_URL": migrated_database_url,
        "PDM_MLFLOW_TRACKING_URI": mlflow_uri,  # GET /v1/models
        "PDM_KAFKA_PARTITIONS": "1",
        "PDM_GATEWAY_REPLY_TIMEOUT_S": "30",  # a loaded CI machine must not turn into a 504
        "PDM_SCHEDULER_WHAT_IF_TIME_LIMIT_S": "1",
    }
    made = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", "apikey", "create", "--name", "schemathesis",
         "--scopes", "admin", "--rate-limit", "100000", "--quiet"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    services = [
        ServiceProcess("ingest", env, tmp / "ingest.log").start(),
        ServiceProcess("scheduler", env, tmp / "scheduler.log").start(),
        ServiceProcess("gateway", env, tmp / "gateway.log").start(),
    ]
    base, key = f"http://127.0.0.1:{services[-1].port}", made.stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    # Ready is not yet joined: wait until ingest's and the scheduler's command consumers answer.
    for method, path, body, ok in (
        ("POST", "/v1/assets", {"asset_id": "warm-up"}, (201, 409)),
        ("POST", "/v1/schedule/replan", None, (200, 202)),
    ):
        deadline = time.monotonic() + 90
        while True:
            answer = httpx.request(method, base + path, json=body, headers=auth, timeout=60)
            if answer.status_code in ok or time.monotonic() > deadline:
                assert answer.status_code in ok, answer.text
                break
    yield base, key
    for service in services:
        service.stop()
    broker.stop()


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_gateway_conforms_to_its_openapi(case, live_gateway) -> None:  # type: ignore[no-untyped-def]
    base_url, key = live_gateway
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        checks=CHECKS,
        timeout=60,
    )
