"""`pdm models|drift`: the requests they send and what they print (the HTTP call replaced
by a recorder)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from pdm_tools import maintenance_cli
from pdm_tools.cli import app

MODELS = {
    "registry": "http://mlflow",
    "items": [
        {
            "name": "failure-pump",
            "champion": {"version": "3", "metrics": {"pr_auc": 0.83}, "tags": {"dataset": "sim"}},
            "challenger": None,
            "previous": {"version": "2", "metrics": {}, "tags": {}},
            "latest_version": "3",
        }
    ],
}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any, Any]]:
    calls: list[tuple[str, str, Any, Any]] = []

    def fake(method: str, path: str, body: Any = None, params: Any = ()) -> Any:
        calls.append((method, path, body, list(params)))
        if path == "/v1/models":
            return MODELS
        if path.endswith("/history"):
            return {"model_name": "failure-pump", "items": [], "retrains": [], "next_cursor": None}
        if path == "/v1/drift/reports":
            return {"items": [], "next_cursor": None}
        if method == "POST":
            return {"command_id": "c", "action": path.rsplit("/", 1)[-1], "status": "accepted",
                    "job_id": "j1", "reports": []}  # fmt: skip
        return {}

    monkeypatch.setattr(maintenance_cli, "call", fake)
    return calls


def test_models_list_prints_the_aliases(sent: list[Any]) -> None:
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "CHAMPION", "CHALLENGER", "PREVIOUS"]
    assert row.split()[:4] == ["failure-pump", "3", "-", "2"] and "pr_auc=0.83" in row
    as_json = CliRunner().invoke(app, ["models", "list", "--task", "failure", "--json"])
    assert json.loads(as_json.output) == MODELS and ("task", "failure") in sent[-1][3]


def test_commands_send_what_the_api_expects(sent: list[Any]) -> None:
    runner = CliRunner()
    for args, expected in (
        (["models", "retrain", "failure-pump", "--reason", "drift", "--force"],
         ("POST", "/v1/models/failure-pump/retrain", {"reason": "drift", "force": True})),
        (["models", "promote", "failure-pump", "--version", "4"],
         ("POST", "/v1/models/failure-pump/promote", {"version": "4"})),
        (["models", "rollback", "failure-pump"],
         ("POST", "/v1/models/failure-pump/rollback", {})),
        (["drift", "check", "rul-pump"], ("POST", "/v1/drift/check", {"model_name": "rul-pump"})),
        (["drift", "check"], ("POST", "/v1/drift/check", {})),
        (["models", "history", "failure-pump"], ("GET", "/v1/models/failure-pump/history", None)),
    ):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert sent[-1][:3] == expected
    assert "retrain job j1" in runner.invoke(app, ["models", "retrain", "rul-pump"]).output
    runner.invoke(app, ["drift", "reports", "--model", "failure-pump", "--drifted"])
    assert ("model_name", "failure-pump") in sent[-1][3] and ("drift_detected", "true") in sent[-1][
        3
    ]


def test_a_problem_is_printed_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise maintenance_cli.ApiError(409, {"detail": "in cooldown for 5 h; force to override"})

    monkeypatch.setattr(maintenance_cli, "call", refuse)
    result = CliRunner().invoke(app, ["models", "retrain", "failure-pump"])
    assert result.exit_code == 1
    assert "HTTP 409: in cooldown" in result.output
