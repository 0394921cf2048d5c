"""The one registry of the platform's services.

Everything that must know every service reads this list: `pdm run` (which processes to start,
on which ports), `pdm config` (whose settings to document), the deploy-files test (which
deployments must exist), the integration tests (which tables to empty between tests) and the
README's services table (`pdm services`). Adding a service is one entry here plus its own
folder (`services/<name>/pdm_<name>/` with `__main__.py`, `settings.py` defining
`<Name>Settings`) and its deploy files; `tests/unit/project/test_catalog.py` fails when any
place that must know a service does not.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings

from pdm_tools.paths import REPO_ROOT


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    #: What it does, one line (the README table).
    summary: str
    #: Tables it owns: only it writes them (the integration tests empty them between tests).
    tables: tuple[str, ...] = ()
    #: Owned tables whose rows a migration seeds, with the SQL that resets them (emptying
    #: such a table would lose the seed).
    seeded: tuple[tuple[str, str], ...] = ()
    #: How it scales: `group` (consumer-group members: replicas beyond the partitions idle),
    #: `stateless` (HTTP, any number of replicas), `single` (exactly one replica).
    scaling: Literal["group", "stateless", "single"] = "group"
    #: Connects to the database (waits for the migration Job, reads the database Secret).
    database: bool = True
    #: Runs only in development (the dev overlay and `pdm run`), never in production.
    dev_only: bool = False

    @property
    def package(self) -> str:
        return f"pdm_{self.name}"

    @property
    def folder(self) -> Path:
        return REPO_ROOT / "services" / self.name

    @property
    def port_env(self) -> str:
        return f"PDM_{self.name.upper()}_HTTP_PORT"

    @property
    def settings_path(self) -> str:
        return f"{self.package}.settings:{self.name.capitalize()}Settings"

    def settings_class(self) -> type[BaseSettings]:
        module, name = self.settings_path.split(":")
        cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
        return cls

    def default_port(self) -> int:
        """The default of its `http_port` setting (the settings class is the one source)."""
        port: int = self.settings_class().model_fields["http_port"].default
        return port


SERVICES: tuple[Service, ...] = (
    Service(
        "ingest",
        "Validates gateway readings, stores each once, registers assets, applies asset commands.",
        tables=("readings", "assets"),
    ),
    Service(
        "anomaly",
        "Univariate and multivariate detectors per asset; alarms with a lifecycle (outbox).",
        tables=("alarms", "alarm_events", "alarm_commands_applied", "alarm_shelves"),
    ),
    Service(
        "prediction",
        "Failure probability, mode, RUL band and explanations; on alarms, requests and a timer.",
        tables=("predictions", "prediction_timer", "shadow_predictions"),
        seeded=(("prediction_timer", "UPDATE prediction_timer SET last_tick = '-infinity'"),),
    ),
    Service(
        "scheduler",
        "Work orders from predictions, alarms, plans and people; the CP-SAT maintenance plan.",
        tables=(
            "work_orders",
            "work_order_transitions",
            "technicians",
            "maintenance_plans",
            "production_windows",
            "scheduler_assets",
            "schedule_plans",
            "schedule",
            "maintenance_outbox",
            "maintenance_commands_applied",
            "scheduler_state",
        ),
        seeded=(
            ("scheduler_state", "UPDATE scheduler_state SET dirty_since = NULL, reasons = '{}'"),
        ),
    ),
    Service(
        "drift",
        "Model lifecycle: drift reports, outcome labels, retrain, challenger, promote, rollback.",
        tables=(
            "drift_profiles",
            "drift_reports",
            "outcome_labels",
            "retrain_jobs",
            "model_alias_history",
            "drift_outbox",
            "drift_commands_applied",
            "model_performance",
        ),
    ),
    Service(
        "simulator",
        "A simulated fleet acting as IoT gateways, with failure injection and ground truth.",
        scaling="single",
        database=False,
        dev_only=True,
    ),
    Service(
        "gateway",
        "The HTTP API (REST + WebSocket): reads the tables, writes through Kafka commands.",
        tables=("api_keys", "audit_log", "idempotency_keys"),
        scaling="stateless",
    ),
)


def reset_statements() -> list[str]:
    """SQL that empties every service's tables and resets the seeded ones (for tests)."""
    seeded = [pair for s in SERVICES for pair in s.seeded]
    skip = {table for table, _ in seeded}
    emptied = [t for s in SERVICES for t in s.tables if t not in skip]
    return [f"TRUNCATE {', '.join(emptied)} CASCADE", *(sql for _, sql in seeded)]


def by_name(name: str) -> Service:
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(f"no service {name!r}; known: {', '.join(s.name for s in SERVICES)}")


def markdown() -> str:
    """The README's services table."""
    lines = ["| service | package | port | owns tables | what it does |", "|---|---|---|---|---|"]
    for s in SERVICES:
        tables = ", ".join(f"`{t}`" for t in s.tables) or "none"
        where = " (development only)" if s.dev_only else ""
        lines.append(
            f"| {s.name}{where} | `{s.package}` | `{s.port_env}` ({s.default_port()}) "
            f"| {tables} | {s.summary} |"
        )
    return "\n".join(lines)
