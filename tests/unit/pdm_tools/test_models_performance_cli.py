"""`pdm models performance`: the request it sends and the table it prints (the HTTP call
replaced by a recorder). The other `pdm models|drift` commands are in
tests/unit/pdm_gateway/test_models_cli.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from pdm_tools import maintenance_cli
from pdm_tools.cli import app

ROW = {
    "model_name": "failure-pump", "model_version": "3", "role": "served", "span": "recent",
    "computed_at": "2026-03-02T08:00:00Z", "window_start": "2026-02-27T08:00:00Z",
    "window_end": "2026-03-02T08:00:00Z", "horizon_h": 72.0, "predictions": 400,
    "alarms": 12, "alarms_judged": 10, "true_alarms": 4, "failures": 5, "caught": 4,
    "precision": 0.4, "recall": 0.8, "lead_h_median": 40.0, "lead_h_mean": 38.5,
    "rul_judged": None, "rul_mae_h": None, "rul_bias_h": None, "rul_coverage": None,
    "degraded": True, "reason": "precision dropped (p=0.01)",
}  # fmt: skip
SHADOW = ROW | {
    "model_version": "4", "role": "shadow", "span": "all", "window_start": "2026-03-01T08:00:00Z",
    "precision": 0.9, "degraded": False, "reason": None,
}  # fmt: skip
PAGE = {"model_name": "failure-pump", "items": [ROW, SHADOW], "next_cursor": None}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any, Any]]:
    calls: list[tuple[str, str, Any, Any]] = []

    def fake(method: str, path: str, body: Any = None, params: Any = ()) -> Any:
        calls.append((method, path, body, [p for p in params if p[1] is not None]))
        return PAGE

    monkeypatch.setattr(maintenance_cli, "call", fake)
    return calls


def test_performance_prints_a_table_of_the_figures(sent: list[Any]) -> None:
    result = CliRunner().invoke(app, ["models", "performance", "failure-pump"])
    assert result.exit_code == 0, result.output
    assert sent[-1] == ("GET", "/v1/models/failure-pump/performance", None, [("limit", 50)])
    title, header, degraded, shadow = result.output.splitlines()
    assert "failure-pump" in title
    assert header.split() == [
        "VERSION", "ROLE", "SPAN", "COMPUTED_AT", "WINDOW", "PREDICTIONS", "PRECISION",
        "RECALL", "LEAD_H", "RUL_MAE_H", "COVERAGE", "DEGRADED",
    ]  # fmt: skip
    assert degraded.split()[:3] == ["3", "served", "recent"]
    assert "2026-03-02 08:00" in degraded and " 3d " in degraded
    assert degraded.split()[6:12] == ["400", "0.40", "0.80", "40.00", "-", "-"]
    assert degraded.endswith("yes: precision dropped (p=0.01)")
    assert shadow.split()[:3] == ["4", "shadow", "all"] and " 24h " in shadow
    assert shadow.endswith("no")


def test_performance_filters_and_json(sent: list[Any]) -> None:
    args = ["models", "performance", "rul-pump", "--role", "shadow", "--span", "all", "--latest"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == PAGE
    assert sent[-1][1] == "/v1/models/rul-pump/performance"
    assert sent[-1][3] == [("role", "shadow"), ("span", "all"), ("latest", "true"), ("limit", 50)]


def test_no_performance_is_the_api_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise maintenance_cli.ApiError(404, {"detail": "no live performance of 'failure-pump'"})

    monkeypatch.setattr(maintenance_cli, "call", refuse)
    result = CliRunner().invoke(app, ["models", "performance", "failure-pump"])
    assert result.exit_code == 1 and "HTTP 404: no live performance" in result.output
