"""`pdm workorders|schedule|technicians`: shift parsing, tables, and the requests they send
(the HTTP call replaced by a recorder)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pdm_tools import maintenance_cli
from pdm_tools.cli import app


def test_shifts_are_parsed_from_a_compact_form() -> None:
    assert maintenance_cli.parse_shift("0-4@06:00-14:00") == {
        "days": [0, 1, 2, 3, 4], "start": "06:00:00", "end": "14:00:00",
    }  # fmt: skip
    assert maintenance_cli.parse_shift("6,5@22:00-06:00")["days"] == [5, 6]
    with pytest.raises(typer.BadParameter):
        maintenance_cli.parse_shift("weekdays")


def test_table_formats_times_floats_and_lists() -> None:
    rows = [{"a": "2026-03-02T08:00:00Z", "b": 1.234, "c": ["x", "y"], "d": None}]
    assert maintenance_cli.table(rows, ("a", "b", "c", "d")).splitlines() == [
        "A                 B     C    D",
        "2026-03-02 08:00  1.23  x,y  -",
    ]


def test_commands_send_what_the_api_expects(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str, Any, Any]] = []
    order = {"work_order_id": "w1", "asset_id": "pump-1", "status": "completed", "title": "t"}

    def fake(method: str, path: str, body: Any = None, params: Any = ()) -> Any:
        sent.append((method, path, body, list(params)))
        return {"items": [order], "next_cursor": None} if path == "/v1/work-orders" else order

    monkeypatch.setattr(maintenance_cli, "call", fake)
    runner = CliRunner()
    done = runner.invoke(
        app, ["workorders", "complete", "w1", "--failure-found", "--mode", "seal_leak"]
    )
    assert done.exit_code == 0, done.output
    assert sent[-1][:3] == (
        "POST", "/v1/work-orders/w1/transitions",
        {"action": "complete", "findings": {"failure_found": True, "failure_mode": "seal_leak"}},
    )  # fmt: skip
    listed = runner.invoke(app, ["workorders", "list", "--status", "open", "--json"])
    assert json.loads(listed.output)["items"] == [order]
    assert ("status", "open") in sent[-1][3]
    tech = runner.invoke(
        app, ["technicians", "upsert", "t1", "--name", "Ana", "--skill", "pump",
              "--shift", "0-4@06:00-14:00"],
    )  # fmt: skip
    assert tech.exit_code == 0, tech.output
    assert sent[-1][1] == "/v1/technicians/t1" and sent[-1][2]["shifts"][0]["days"] == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_a_problem_is_printed_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise maintenance_cli.ApiError(409, {"detail": "cannot complete an open order"})

    monkeypatch.setattr(maintenance_cli, "call", refuse)
    result = CliRunner().invoke(app, ["workorders", "cancel", "w1", "--reason", "x"])
    assert result.exit_code == 1
    assert "HTTP 409: cannot complete an open order" in result.output
