"""The demo crew `make run` seeds is valid, covers every hour, and is sent idempotently."""

from __future__ import annotations

from datetime import UTC, datetime

from pdm_common.maintenance import MaintenanceCommand
from pdm_scheduler.commands import check
from pdm_scheduler.planning import shift_spans
from pdm_tools.bootstrap import demo_crew_commands


def test_demo_crew_commands_are_valid_and_keep_their_ids() -> None:
    commands = [MaintenanceCommand.model_validate(c) for c in demo_crew_commands()]
    assert all(check(c) is None for c in commands)
    assert [c.command_id for c in commands] == [
        MaintenanceCommand.model_validate(c).command_id for c in demo_crew_commands()
    ]
    skills = {s for c in commands if c.technician for s in c.technician.skills}
    assert {"mechanical", "electrical", "machining"} <= skills


def test_someone_mechanical_is_on_shift_every_hour_of_the_week() -> None:
    crew = [c.technician for c in map(MaintenanceCommand.model_validate, demo_crew_commands())]
    anchor = datetime(2026, 12, 7, tzinfo=UTC)
    covered: set[int] = set()
    for t in crew:
        if t is not None and "mechanical" in t.skills:
            for start, end in shift_spans(t, anchor, 168):
                covered |= set(range(start, end))
    assert covered == set(range(168))
