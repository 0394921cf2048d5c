"""`pdm workorders|schedule|technicians ...`: the maintenance side of the API gateway from
the command line (tables by default, `--json` for scripts).

They talk to the gateway's HTTP API, as any client does: `PDM_API_URL` (default
`http://127.0.0.1:8000`) with the key in `PDM_API_KEY`, else the admin key `make run` /
`pdm run` keeps in the state directory (`<state dir>/api-key`). Every write carries an
`Idempotency-Key`, and a write the scheduler did not answer in time (504) is sent once more
with the same key: the scheduler applies it at most once.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import time
from typing import Annotated, Any

import typer

from pdm_common.settings import STATE_DIR

workorders_app = typer.Typer(no_args_is_help=True, help="Work orders (list, show, create, move).")
schedule_app = typer.Typer(no_args_is_help=True, help="The maintenance schedule.")
technicians_app = typer.Typer(no_args_is_help=True, help="Technicians (skills, shifts, cost).")
DEFAULT_URL = "http://127.0.0.1:8000"
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        detail = body.get("detail") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status}: {detail or body}")
        self.status = status


def api_key() -> str:
    key = os.environ.get("PDM_API_KEY")
    if key:
        return key.strip()
    path = STATE_DIR / "api-key"
    if path.exists():
        return path.read_text().strip()
    raise typer.BadParameter(
        "no API key: set PDM_API_KEY (create one with `pdm apikey create --scopes read,write`)"
        f" or start the platform with `pdm run` (it keeps one in {path})"
    )


def call(method: str, path: str, body: Any = None, params: Sequence[tuple[str, Any]] = ()) -> Any:
    """One API request; the parsed JSON answer, `ApiError` for a problem document."""
    base = os.environ.get("PDM_API_URL", DEFAULT_URL).rstrip("/")
    query = urllib.parse.urlencode([(k, v) for k, v in params if v is not None])
    url = f"{base}{path}" + (f"?{query}" if query else "")
    headers = {"Authorization": f"Bearer {api_key()}", "Accept": "application/json"}
    data = None
    if method != "GET":
        headers["Idempotency-Key"] = str(uuid.uuid4())
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    for attempt in (1, 2):
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                raw = answer.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            if exc.code == 504 and method != "GET" and attempt == 1:
                continue  # same Idempotency-Key: applied at most once
            raise ApiError(exc.code, parsed) from None
        except urllib.error.URLError as exc:
            raise typer.BadParameter(
                f"cannot reach the API at {base} ({exc.reason}); set PDM_API_URL"
            ) from None
    raise AssertionError("unreachable")


def run(method: str, path: str, body: Any = None, params: Sequence[tuple[str, Any]] = ()) -> Any:
    try:
        return call(method, path, body, params)
    except ApiError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as a plain fixed-width table (timestamps to the minute, floats to 2 places)."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.2f}"
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        text = str(value)
        if len(text) >= 20 and text[4:5] == "-" and text[10:11] == "T":
            return text[:16].replace("T", " ")
        return text

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def show(answer: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json or columns is None:
        typer.echo(json.dumps(answer, indent=2))
        return
    rows = answer if isinstance(answer, list) else [answer]
    typer.echo(table(rows, columns))


ORDER_COLUMNS = ("work_order_id", "asset_id", "type", "status", "priority", "technician_id",
                 "scheduled_start", "due_by", "title")  # fmt: skip


# --- work orders ------------------------------------------------------------------------------


@workorders_app.command("list")
def workorders_list(
    status: Annotated[list[str] | None, typer.Option(help="Status (repeatable).")] = None,
    asset: Annotated[str | None, typer.Option(help="Asset id.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Order type.")] = None,
    technician: Annotated[str | None, typer.Option(help="Technician id.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Work orders, newest first."""
    params = [("status", s) for s in status or []] + [
        ("asset_id", asset), ("type", type_), ("technician_id", technician), ("limit", limit),
    ]  # fmt: skip
    page = run("GET", "/v1/work-orders", params=params)
    show(page if as_json else page["items"], as_json, ORDER_COLUMNS)


@workorders_app.command("show")
def workorders_show(work_order_id: str, as_json: JsonOption = False) -> None:
    """One work order and its lifecycle moves."""
    order = run("GET", f"/v1/work-orders/{work_order_id}")
    if as_json:
        show(order, True)
        return
    for name in (*ORDER_COLUMNS, "description", "skill", "estimated_hours", "failure_mode",
                 "failure_probability", "rul_p50_h", "bound_by", "schedule_note", "findings",
                 "created_by", "created_at"):  # fmt: skip
        value = order.get(name)
        typer.echo(f"{name:<20} {json.dumps(value) if isinstance(value, dict) else value}")
    typer.echo("")
    typer.echo(table(order["transitions"], ("at", "from_status", "to_status", "actor", "reason")))


@workorders_app.command("create")
def workorders_create(
    asset: Annotated[str, typer.Option(help="Asset id.")],
    title: Annotated[str, typer.Option(help="What to do.")],
    type_: Annotated[
        str, typer.Option("--type", help="preventive, predictive, corrective, inspection.")
    ] = "corrective",
    priority: Annotated[int | None, typer.Option(help="0 low .. 3 urgent.")] = None,
    skill: Annotated[str | None, typer.Option(help="Skill needed.")] = None,
    hours: Annotated[float | None, typer.Option(help="Estimated hours.")] = None,
    due: Annotated[str | None, typer.Option(help="Due by (ISO 8601 with offset).")] = None,
    description: Annotated[str | None, typer.Option(help="Details.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Open a work order by hand."""
    fields = {
        "asset_id": asset, "title": title, "type": type_, "priority": priority, "skill": skill,
        "estimated_hours": hours, "due_by": due, "description": description,
    }  # fmt: skip
    order = run("POST", "/v1/work-orders", {k: v for k, v in fields.items() if v is not None})
    show(order, as_json, ORDER_COLUMNS)


def _move(work_order_id: str, body: dict[str, Any], as_json: bool) -> None:
    order = run("POST", f"/v1/work-orders/{work_order_id}/transitions", body)
    show(order, as_json, ORDER_COLUMNS)


@workorders_app.command("start")
def workorders_start(
    work_order_id: str,
    technician: Annotated[str | None, typer.Option(help="Who starts it (pins it).")] = None,
    reason: Annotated[str | None, typer.Option(help="Recorded with the move.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Start a work order."""
    body = {"action": "start", "technician_id": technician, "reason": reason}
    _move(work_order_id, {k: v for k, v in body.items() if v is not None}, as_json)


@workorders_app.command("complete")
def workorders_complete(
    work_order_id: str,
    failure_found: Annotated[
        bool, typer.Option("--failure-found/--no-failure", help="Was a failure found?")
    ],
    mode: Annotated[str | None, typer.Option(help="Failure mode (e.g. seal_leak).")] = None,
    cause: Annotated[str | None, typer.Option(help="Cause.")] = None,
    remedy: Annotated[str | None, typer.Option(help="What was done.")] = None,
    hours: Annotated[float | None, typer.Option(help="Actual hours.")] = None,
    cost: Annotated[float | None, typer.Option(help="Actual cost.")] = None,
    notes: Annotated[str | None, typer.Option(help="Notes.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Complete a work order with its findings (the ground-truth label)."""
    findings = {
        "failure_found": failure_found, "failure_mode": mode, "cause": cause, "remedy": remedy,
        "actual_hours": hours, "actual_cost": cost, "notes": notes,
    }  # fmt: skip
    body = {"action": "complete", "findings": {k: v for k, v in findings.items() if v is not None}}
    _move(work_order_id, body, as_json)


@workorders_app.command("cancel")
def workorders_cancel(
    work_order_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
    as_json: JsonOption = False,
) -> None:
    """Cancel a work order."""
    _move(work_order_id, {"action": "cancel", "reason": reason}, as_json)


# --- schedule ---------------------------------------------------------------------------------

PLANNED_COLUMNS = ("technician_id", "asset_id", "start", "end", "due_by", "lateness_h",
                   "bound_by", "work_order_id")  # fmt: skip


def _summary(plan: dict[str, Any]) -> str:
    return (
        f"plan {plan.get('plan_id') or '(what-if)'}  made {str(plan['created_at'])[:16]}  "
        f"horizon {plan['horizon_h']} h  {plan['method']} {plan['solver_status']}  "
        f"scheduled {plan['scheduled']}  unschedulable {plan['unschedulable']}  late "
        f"{plan['late']}  expected failure cost {plan['expected_failure_cost']:.0f}  "
        f"risk removed {plan['risk_removed']:.0f}"
    )


@schedule_app.command("show")
def schedule_show(
    view: Annotated[str, typer.Option(help="technician, asset or plan.")] = "technician",
    as_json: JsonOption = False,
) -> None:
    """The current plan, by technician (default) or asset."""
    plan = run("GET", "/v1/schedule", params=[("view", view)])
    if as_json:
        show(plan, True)
        return
    typer.echo(_summary(plan))
    for lane in plan["lanes"]:
        typer.secho(f"\n{lane['key'] or '(no technician)'}  {lane['busy_h']:.1f} h", bold=True)
        typer.echo(table(lane["orders"], PLANNED_COLUMNS))
    if plan["orders"]:
        title = "unschedulable" if plan["lanes"] else "orders"
        typer.secho(f"\n{title}", bold=True)
        typer.echo(table(plan["orders"], (*PLANNED_COLUMNS, "status", "reason")))


@schedule_app.command("replan")
def schedule_replan(
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the scheduler to plan again now."""
    answer = run("POST", "/v1/schedule/replan", {"reason": reason} if reason else {})
    if as_json:
        show(answer, True)
    elif answer.get("schedule"):
        typer.echo(_summary(answer["schedule"]))
    else:
        typer.echo(f"{answer['status']}: {answer.get('message') or 'planning'}")


@schedule_app.command("what-if")
def schedule_what_if(
    horizon_h: Annotated[int | None, typer.Option(help="Planning horizon, hours.")] = None,
    budget_per_week: Annotated[float | None, typer.Option(help="Weekly budget.")] = None,
    technician: Annotated[
        list[str] | None, typer.Option(help="Only these technicians (repeatable).")
    ] = None,
    time_limit_s: Annotated[float | None, typer.Option(help="Solver time limit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The plan under other constraints, computed and never committed."""
    body = {
        "horizon_h": horizon_h, "budget_per_week": budget_per_week, "technicians": technician,
        "time_limit_s": time_limit_s,
    }  # fmt: skip
    plan = run("POST", "/v1/schedule/what-if", {k: v for k, v in body.items() if v is not None})
    if as_json:
        show(plan, True)
        return
    typer.echo(_summary(plan))
    typer.echo(table(plan["orders"], (*PLANNED_COLUMNS, "status", "reason")))


# --- technicians ------------------------------------------------------------------------------


def parse_shift(text: str) -> dict[str, Any]:
    """`0-4@06:00-14:00` (Monday to Friday, 06:00 to 14:00 UTC) or `5,6@22:00-06:00`."""
    try:
        days_text, hours = text.split("@")
        start, end = (time.fromisoformat(t) for t in hours.split("-"))
        days: list[int] = []
        for part in days_text.split(","):
            low, _, high = part.partition("-")
            days += range(int(low), int(high or low) + 1)
    except ValueError:
        raise typer.BadParameter(
            f"shift {text!r}: write DAYS@HH:MM-HH:MM, days 0 (Monday)..6, e.g. 0-4@06:00-14:00"
        ) from None
    return {"days": sorted(set(days)), "start": start.isoformat(), "end": end.isoformat()}


@technicians_app.command("list")
def technicians_list(as_json: JsonOption = False) -> None:
    """Technicians with skills, shifts and hourly cost."""
    techs = run("GET", "/v1/technicians")
    if as_json:
        show(techs, True)
        return
    for t in techs:
        t["shifts"] = [
            f"{','.join(str(d) for d in s['days'])}@{s['start'][:5]}-{s['end'][:5]}"
            for s in t["shifts"]
        ]
    typer.echo(table(techs, ("technician_id", "name", "skills", "shifts", "hourly_cost", "active")))


@technicians_app.command("upsert")
def technicians_upsert(
    technician_id: str,
    name: Annotated[str, typer.Option(help="Name.")],
    skill: Annotated[list[str], typer.Option(help="A skill (repeatable).")],
    shift: Annotated[
        list[str], typer.Option(help="DAYS@HH:MM-HH:MM UTC, e.g. 0-4@06:00-14:00 (repeatable).")
    ],
    hourly_cost: Annotated[float, typer.Option(help="Cost per hour.")] = 0.0,
    active: Annotated[bool, typer.Option(help="Available for planning.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Create or replace a technician."""
    body = {
        "name": name, "skills": skill, "shifts": [parse_shift(s) for s in shift],
        "hourly_cost": hourly_cost, "active": active,
    }  # fmt: skip
    tech = run("PUT", f"/v1/technicians/{technician_id}", body)
    show(tech, as_json, ("technician_id", "name", "skills", "hourly_cost", "active"))
