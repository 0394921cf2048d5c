"""`pdm models list|history|performance|retrain|promote|rollback` and `pdm drift
reports|show|check`: the model lifecycle (the drift service) through the API gateway, as any
client sees it (tables by default, `--json` for scripts).

Like `pdm workorders`, they use `PDM_API_URL` (default `http://127.0.0.1:8000`) and the key in
`PDM_API_KEY` (else the one `pdm run` keeps); retrain, promote and rollback need an admin key.
Every write carries an `Idempotency-Key`, and one the drift service did not answer in time
(504) is sent once more with the same key: the service applies it at most once.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pdm_tools import maintenance_cli as api
from pdm_tools.maintenance_cli import JsonOption, show, table

models_app = typer.Typer(
    no_args_is_help=True,
    help="Served models: champion/challenger/previous, alias history, live performance, "
    "retrain, promote, rollback.",
)
drift_app = typer.Typer(no_args_is_help=True, help="Drift reports and drift checks.")
REPORT_COLUMNS = (
    "report_id", "created_at", "kind", "model_name", "model_version", "asset_type",
    "drifted_share", "weighted_share", "drift_detected", "trigger",
)  # fmt: skip
HISTORY_COLUMNS = ("moved_at", "alias", "version", "previous_version", "actor", "trigger",
                   "reason")  # fmt: skip
RETRAIN_COLUMNS = ("started_at", "status", "trigger", "challenger_version", "finished_at",
                   "reason", "error")  # fmt: skip
PERFORMANCE_COLUMNS = ("version", "role", "span", "computed_at", "window", "predictions",
                       "precision", "recall", "lead_h", "rul_mae_h", "coverage",
                       "degraded")  # fmt: skip
COLUMN_COLUMNS = ("column", "method", "statistic", "threshold", "drifted", "psi", "importance",
                  "mean_shift")  # fmt: skip


def _metrics(version: dict[str, Any] | None, most: int = 3) -> str:
    if not version or not version.get("metrics"):
        return "-"
    items = sorted(version["metrics"].items())[:most]
    return " ".join(f"{k}={v:.3g}" for k, v in items)


def _number(version: dict[str, Any] | None) -> str | None:
    return version["version"] if version else None


@models_app.command("list")
def models_list(
    task: Annotated[str | None, typer.Option(help="failure, rul or anomaly.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Served models with the versions behind champion, challenger and previous."""
    answer = api.run("GET", "/v1/models", params=[("task", task)])
    if as_json:
        show(answer, True)
        return
    rows = [
        {
            "name": m["name"],
            "champion": _number(m.get("champion")),
            "challenger": _number(m.get("challenger")),
            "previous": _number(m.get("previous")),
            "latest": m.get("latest_version"),
            "dataset": (m.get("champion") or {}).get("tags", {}).get("dataset"),
            "champion_metrics": _metrics(m.get("champion")),
        }
        for m in answer["items"]
    ]
    if not rows:
        typer.echo(f"no served models in the registry ({answer['registry']}); see `pdm train`")
        return
    typer.echo(table(rows, tuple(rows[0])))


@models_app.command("history")
def models_history(
    name: Annotated[str, typer.Argument(help="Model name, e.g. failure-pump.")],
    limit: Annotated[int, typer.Option(help="How many moves, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Which version served when, who or what moved it, and the model's retrains."""
    answer = api.run("GET", f"/v1/models/{name}/history", params=[("limit", limit)])
    if as_json:
        show(answer, True)
        return
    typer.secho(f"{name}: alias moves", bold=True)
    typer.echo(table(answer["items"], HISTORY_COLUMNS))
    if answer.get("retrains"):
        typer.secho("\nretrains", bold=True)
        typer.echo(table(answer["retrains"], RETRAIN_COLUMNS))


def _hours(start: str, end: str) -> str:
    """The length of a window, compact: `36h`, `14d`."""
    hours = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 3600
    return f"{hours / 24:.3g}d" if hours >= 48 else f"{hours:.3g}h"


def _performance_row(p: dict[str, Any]) -> dict[str, Any]:
    verdict = "yes" if p.get("degraded") else "no"
    return {
        "version": p["model_version"], "role": p["role"], "span": p["span"],
        "computed_at": p["computed_at"], "window": _hours(p["window_start"], p["window_end"]),
        "predictions": p["predictions"], "precision": p.get("precision"),
        "recall": p.get("recall"), "lead_h": p.get("lead_h_median"),
        "rul_mae_h": p.get("rul_mae_h"), "coverage": p.get("rul_coverage"),
        "degraded": f"{verdict}: {p['reason']}" if p.get("reason") else verdict,
    }  # fmt: skip


@models_app.command("performance")
def models_performance(
    name: Annotated[str, typer.Argument(help="Model name, e.g. failure-pump.")],
    role: Annotated[str | None, typer.Option(help="served or shadow.")] = None,
    span: Annotated[str | None, typer.Option(help="all or recent.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the newest computation.")] = False,
    limit: Annotated[int, typer.Option(help="How many rows, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Live precision / recall / lead time (failure) or RUL error and coverage of the model's
    versions, from its predictions joined with outcome labels at each timed drift check."""
    params = [
        ("role", role), ("span", span), ("latest", "true" if latest else None), ("limit", limit),
    ]  # fmt: skip
    answer = api.run("GET", f"/v1/models/{name}/performance", params=params)
    if as_json:
        show(answer, True)
        return
    typer.secho(f"{name}: live performance", bold=True)
    typer.echo(table([_performance_row(p) for p in answer["items"]], PERFORMANCE_COLUMNS))


def _outcome(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        show(answer, True)
        return
    line = f"{answer['action']} {answer['status']}"
    if answer.get("message"):
        line += f": {answer['message']}"
    typer.echo(line)
    if answer.get("job_id"):
        typer.echo(f"retrain job {answer['job_id']} (see `pdm models history`)")
    change = answer.get("alias_change")
    if change:
        typer.echo(
            f"{change['model_name']}@{change['alias']} -> version {change['version']} "
            f"(was {change.get('previous_version') or '-'})"
        )
    if answer.get("reports"):
        typer.echo("reports: " + " ".join(answer["reports"]) + " (see `pdm drift show ID`)")


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@models_app.command("retrain")
def models_retrain(
    name: Annotated[str, typer.Argument(help="Model name, e.g. failure-pump.")],
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    force: Annotated[bool, typer.Option(help="Retrain even during the cooldown.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Retrain a model now (admin); the challenger is judged against the champion."""
    body = _body(reason=reason, force=force or None)
    _outcome(api.run("POST", f"/v1/models/{name}/retrain", body), as_json)


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Model name, e.g. failure-pump.")],
    version: Annotated[
        str | None, typer.Option(help="Version to make champion (default: the challenger).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version (default: the challenger) the champion (admin)."""
    body = _body(version=version, reason=reason)
    _outcome(api.run("POST", f"/v1/models/{name}/promote", body), as_json)


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name, e.g. failure-pump.")],
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Move the champion back to the previous version (admin)."""
    _outcome(api.run("POST", f"/v1/models/{name}/rollback", _body(reason=reason)), as_json)


@drift_app.command("reports")
def drift_reports(
    model: Annotated[str | None, typer.Option(help="Model name.")] = None,
    kind: Annotated[str | None, typer.Option(help="features or sensors.")] = None,
    asset_type: Annotated[str | None, typer.Option(help="Asset type.")] = None,
    drifted: Annotated[
        bool | None, typer.Option("--drifted/--not-drifted", help="Only this verdict.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Drift reports, newest first."""
    params = [
        ("model_name", model), ("kind", kind), ("asset_type", asset_type),
        ("drift_detected", None if drifted is None else str(drifted).lower()), ("limit", limit),
    ]  # fmt: skip
    page = api.run("GET", "/v1/drift/reports", params=params)
    show(page if as_json else page["items"], as_json, REPORT_COLUMNS)


@drift_app.command("show")
def drift_show(
    report_id: Annotated[str, typer.Argument(help="Report id.")],
    html: Annotated[
        Path | None, typer.Option(help="Also save the Evidently report (HTML) to this file.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """One drift report: headlines and every column's verdict."""
    report = api.run("GET", f"/v1/drift/reports/{report_id}")
    if html is not None:
        html.write_text(fetch_html(f"/v1/drift/reports/{report_id}/html"))
    if as_json:
        show(report, True)
        return
    extra = ("window_start", "window_end", "reference_rows", "current_rows")
    for name in (*REPORT_COLUMNS[1:], *extra):
        typer.echo(f"{name:<16} {report.get(name)}")
    for line in report.get("headlines") or []:
        typer.echo(f"- {line}")
    typer.echo("")
    typer.echo(table(report.get("columns") or [], COLUMN_COLUMNS))
    if html is not None:
        typer.echo(f"\nEvidently report saved to {html}")


def fetch_html(path: str) -> str:
    """A text/html answer of the API (the Evidently report)."""
    base = os.environ.get("PDM_API_URL", api.DEFAULT_URL).rstrip("/")
    request = urllib.request.Request(
        base + path, headers={"Authorization": f"Bearer {api.api_key()}", "Accept": "text/html"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            text: str = answer.read().decode("utf-8", "replace")
            return text
    except urllib.error.HTTPError as exc:
        import json

        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = None
        typer.secho(f"HTTP {exc.code}: {detail or exc.reason}", fg="red", err=True)
        raise typer.Exit(1) from None
    except urllib.error.URLError as exc:
        raise typer.BadParameter(
            f"cannot reach the API at {base} ({exc.reason}); set PDM_API_URL"
        ) from None


@drift_app.command("check")
def drift_check(
    model: Annotated[
        str | None, typer.Argument(help="Model name (default: every served model).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the drift service for a check now (limited per key; it also checks on a timer)."""
    _outcome(api.run("POST", "/v1/drift/check", _body(model_name=model)), as_json)
