"""The anomaly service's decisions on the simulated fleet, scored against ground truth
(`pdm_tools.alarm_replay`): a healthy fleet through scenario changes and a restart raises no
alarm (where the detector before sensor semantics raised many), and each failure mode is
alarmed before the machine fails."""

from __future__ import annotations

import pytest

from pdm_ml.simulation.machines import ALLOWED_MODES, NON_FAILURE_MODES
from pdm_tools import alarm_replay as replay

ONE_EACH = {"pump": 1, "motor": 1, "compressor": 1, "milling": 1}


def test_a_healthy_fleet_through_scenario_changes_and_a_restart_raises_no_alarm() -> None:
    run = replay.Run(
        hours=8.0,
        fleet=ONE_EACH,
        scenarios=((3.5 * 3600, "high_load"), (5.5 * 3600, "cold_environment")),
        restarts=(4.5 * 3600,),
    )
    result = replay.score(replay.replay(run))
    assert result["false_alarms"] == 0, result["false_by_condition"]
    before = replay.score(
        replay.replay(run, make_detector=replay.detector_before_semantics, context=False)
    )
    assert before["false_alarms"] > 10  # what the service raised before, on the same run


FAILURE_MODES = sorted(
    {(t, m) for t, modes in ALLOWED_MODES.items() for m in modes if m not in NON_FAILURE_MODES}
)


@pytest.mark.parametrize("round_", [0, 1, 2])
def test_each_failure_mode_is_alarmed_before_the_machine_fails(round_: int) -> None:
    """Critical failures (1 h ramps) injected once the detectors have a range; every
    (machine type, failure mode) pair is covered by one of the rounds."""
    injections = []
    for asset_type in ONE_EACH:
        modes = [m for m in ALLOWED_MODES[asset_type] if m not in NON_FAILURE_MODES]
        mode = modes[round_ % len(modes)]
        injections.append(replay.Injection(3.2 * 3600, f"{asset_type}-001", mode, "critical"))
    run = replay.Run(hours=4.5, fleet=ONE_EACH, seed=round_, injections=tuple(injections))
    result = replay.score(replay.replay(run))
    missed = [
        (f["asset_id"], f["mode"]) for f in result["failures"] if not f["alarmed_before_failure"]
    ]
    assert result["failures_judged"] == len(injections)
    assert missed == []


def test_every_failure_mode_is_in_some_round() -> None:
    covered = set()
    for asset_type in ONE_EACH:
        modes = [m for m in ALLOWED_MODES[asset_type] if m not in NON_FAILURE_MODES]
        covered |= {(asset_type, modes[r % len(modes)]) for r in range(3)}
    assert covered == set(FAILURE_MODES)
