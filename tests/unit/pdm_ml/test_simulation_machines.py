"""The simulator's machines: deterministic, physically plausible, and failures that degrade
progressively to a known failure time (the ground truth the platform is evaluated against).

Failure effects are measured against a healthy twin (same seed, same asset id): the process
noise of both is identical, so their difference is the failure alone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pdm_common.events import ReadingSnapshot, parse_gateway_message
from pdm_ml.simulation.machines import (
    ALLOWED_MODES,
    ASSET_TYPES,
    SCENARIOS,
    SEVERITIES,
    Fleet,
    Machine,
    degradation,
    machine_seed,
    sensor_names,
    ticks,
)

T0 = datetime(2024, 3, 4, 6, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def run(machine: Machine, times: list[datetime]) -> dict[str, np.ndarray]:
    rows = [machine.step(t) for t in times]
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def stream(asset_type: str, *, seed: int = 0, scenario: str = "normal", n: int = 720):
    machine = Machine(f"{asset_type}-001", asset_type, seed, scenario)  # type: ignore[arg-type]
    return run(machine, ticks(T0, MINUTE, n))


# --- determinism ---------------------------------------------------------------------------


def fleet_streams(seed: int, counts: dict[str, int]) -> list[list[dict]]:
    fleet = Fleet.build(counts, seed=seed)
    return [fleet.snapshots(t) for t in ticks(T0, MINUTE, 60)]


def test_same_seed_gives_identical_streams_and_another_seed_does_not() -> None:
    counts = {t: 2 for t in ASSET_TYPES}
    first, again, other = (
        fleet_streams(7, counts),
        fleet_streams(7, counts),
        fleet_streams(8, counts),
    )
    assert first == again
    for a, b in zip(first[-1], other[-1], strict=True):
        assert a["asset_id"] == b["asset_id"]
        assert a["readings"] != b["readings"]


def test_a_machine_stream_does_not_depend_on_the_rest_of_the_fleet() -> None:
    alone = fleet_streams(3, {"pump": 1})
    crowded = fleet_streams(3, {"milling": 4, "pump": 3, "motor": 2})
    assert [s[0] for s in alone] == [
        next(m for m in s if m["asset_id"] == "pump-001") for s in crowded
    ]


def test_failures_are_deterministic_too() -> None:
    def faulty() -> dict[str, np.ndarray]:
        machine = Machine("pump-002", "pump", 5)
        machine.inject("bearing_degradation", "high", T0, timedelta(hours=2))
        machine.inject("sensor_interference", "critical", T0, sensor="flow")
        return run(machine, ticks(T0, MINUTE, 180))

    a, b = faulty(), faulty()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_asset_seed_uses_a_stable_hash_not_pythons_salted_hash() -> None:
    """Pinned: Python's `hash()` of a str changes per process, so it would fail here; a
    change of this value means every recorded simulation changes."""
    assert machine_seed(42, "motor-001").entropy == [42, 3637681896]  # zlib.crc32
    assert Machine("motor-001", "motor", 42).step(T0)["speed"] == pytest.approx(
        1483.9690749930392, rel=1e-12
    )


# --- physical plausibility -----------------------------------------------------------------

#: sensor -> (low, high) over a day of normal duty. Vibration stays in ISO 10816 zone A/B of
#: its class (pump II < 2.8, motor I < 1.8, compressor III < 4.5 mm/s).
NORMAL_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "pump": {
        "vibration": (0.8, 2.8),
        "bearing_temperature": (25.0, 70.0),
        "discharge_pressure": (4.5, 7.5),
        "flow": (80.0, 160.0),
        "motor_current": (40.0, 70.0),
    },
    "motor": {
        "vibration": (0.4, 1.8),
        "winding_temperature": (45.0, 110.0),
        "current": (20.0, 40.0),
        "speed": (1440.0, 1500.0),
    },
    "compressor": {
        "vibration": (1.5, 4.5),
        "discharge_temperature": (60.0, 100.0),
        "discharge_pressure": (7.0, 8.0),
        "power": (55.0, 95.0),
    },
    "milling": {
        "air_temperature": (290.0, 310.0),
        "process_temperature": (298.0, 322.0),
        "rotational_speed": (1000.0, 2900.0),
        "torque": (3.0, 90.0),
        "tool_wear": (0.0, 245.0),
        "quality_code": (0.0, 2.0),
    },
}


@pytest.mark.parametrize("asset_type", ASSET_TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normal_duty_stays_in_plausible_ranges(asset_type: str, seed: int) -> None:
    values = stream(asset_type, seed=seed, n=1440)  # a day, so the diurnal cycle is in
    assert tuple(values) == sensor_names(asset_type)  # type: ignore[arg-type]
    for sensor, (low, high) in NORMAL_RANGES[asset_type].items():
        v = values[sensor]
        assert np.isfinite(v).all()
        assert low <= v.min() and v.max() <= high, (sensor, v.min(), v.max())


def test_temperatures_follow_the_day() -> None:
    """Warmest mid-afternoon (UTC), coolest before dawn: the diurnal ambient effect."""
    values = stream("pump", n=1440)  # from 06:00
    assert (
        values["bearing_temperature"][540:600].mean()
        > values["bearing_temperature"][1260:1320].mean() + 3.0
    )


# --- scenarios -----------------------------------------------------------------------------

#: (scenario, type, sensor, sign of the change of the mean against `normal`)
SCENARIO_MOVES = [
    ("high_load", "pump", "flow", +1),
    ("high_load", "pump", "motor_current", +1),
    ("high_load", "pump", "discharge_pressure", -1),
    ("high_load", "motor", "current", +1),
    ("high_load", "motor", "winding_temperature", +1),
    ("high_load", "compressor", "power", +1),
    ("high_load", "milling", "torque", +1),
    ("high_load", "milling", "rotational_speed", -1),
    ("precision", "pump", "flow", -1),
    ("precision", "motor", "speed", -1),
    ("precision", "compressor", "power", -1),
    ("precision", "milling", "torque", -1),
    ("precision", "milling", "quality_code", +1),
    ("cold_environment", "pump", "bearing_temperature", -1),
    ("cold_environment", "motor", "winding_temperature", -1),
    ("cold_environment", "compressor", "discharge_temperature", -1),
    ("cold_environment", "milling", "air_temperature", -1),
    ("cold_environment", "milling", "process_temperature", -1),
    ("high_speed", "pump", "flow", +1),
    ("high_speed", "pump", "vibration", +1),
    ("high_speed", "motor", "speed", +1),
    ("high_speed", "compressor", "vibration", +1),
    ("high_speed", "milling", "rotational_speed", +1),
]


@pytest.mark.parametrize(("name", "asset_type", "sensor", "sign"), SCENARIO_MOVES)
def test_scenario_moves_the_operating_point_as_documented(
    name: str, asset_type: str, sensor: str, sign: int
) -> None:
    base = stream(asset_type, n=360)[sensor]
    moved = stream(asset_type, scenario=name, n=360)[sensor]
    change = moved.mean() - base.mean()
    assert sign * change > 0.04 * abs(base.mean()) or sign * change > 3 * base.std(), change


def test_cold_environment_is_15_kelvin_colder() -> None:
    base = stream("milling", n=200)["air_temperature"]
    cold = stream("milling", scenario="cold_environment", n=200)["air_temperature"]
    assert np.allclose(base - cold, 15.0)


def test_noise_factor_changes_the_spread() -> None:
    assert (
        stream("milling", scenario="precision")["torque"].std()
        < 0.7 * stream("milling")["torque"].std()
    )
    assert (
        stream("motor", scenario="high_speed")["vibration"].std()
        > stream("motor")["vibration"].std()
    )


def test_scenario_change_mid_stream_warms_up_gradually() -> None:
    machine = Machine("motor-001", "motor")
    times = ticks(T0, MINUTE, 240)
    run(machine, times[:60])
    machine.set_scenario("high_load")
    after = run(machine, times[60:])["winding_temperature"]
    assert after[:5].mean() < after[-30:].mean() - 10  # thermal lag, no jump
    with pytest.raises(ValueError, match="unknown scenario 'turbo'"):
        machine.set_scenario("turbo")


# --- failures ------------------------------------------------------------------------------

#: (type, mode, sensor, sign): what each failure does to its asset
FAILURE_SIGNS = [
    ("pump", "bearing_degradation", "vibration", +1),
    ("pump", "bearing_degradation", "bearing_temperature", +1),
    ("pump", "motor_overheating", "bearing_temperature", +1),
    ("pump", "motor_overheating", "motor_current", +1),
    ("pump", "seal_leak", "discharge_pressure", -1),
    ("pump", "seal_leak", "flow", -1),
    ("pump", "seal_leak", "motor_current", +1),
    ("motor", "bearing_degradation", "vibration", +1),
    ("motor", "motor_overheating", "winding_temperature", +1),
    ("motor", "motor_overheating", "current", +1),
    ("compressor", "bearing_degradation", "vibration", +1),
    ("compressor", "motor_overheating", "discharge_temperature", +1),
    ("compressor", "motor_overheating", "power", +1),
    ("compressor", "seal_leak", "discharge_pressure", -1),
    ("compressor", "seal_leak", "power", +1),
    ("milling", "tool_wear", "torque", +1),
    ("milling", "tool_wear", "process_temperature", +1),
]
RAMP = timedelta(hours=8)
STEP = timedelta(minutes=2)  # 240 steps to failure


def faulty_and_healthy(
    asset_type: str, mode: str, severity: str = "high", ramp: timedelta = RAMP, n: int = 240
) -> tuple[Machine, dict[str, np.ndarray], dict[str, np.ndarray]]:
    asset_id = f"{asset_type}-009"
    faulty = Machine(asset_id, asset_type)  # type: ignore[arg-type]
    faulty.inject(mode, severity, T0, ramp)
    times = ticks(T0, ramp / n, n)
    healthy = Machine(asset_id, asset_type)  # type: ignore[arg-type]
    return faulty, run(faulty, times), run(healthy, times)


@pytest.mark.parametrize(("asset_type", "mode", "sensor", "sign"), FAILURE_SIGNS)
def test_failure_degrades_progressively(asset_type: str, mode: str, sensor: str, sign: int) -> None:
    _, faulty, healthy = faulty_and_healthy(asset_type, mode)
    deviation = sign * (faulty[sensor] - healthy[sensor])
    quarters = [w.mean() for w in np.array_split(deviation, 4)]
    assert quarters == sorted(quarters) and quarters[0] < quarters[-1], quarters
    assert quarters[0] < 0.25 * quarters[-1]  # quiet at first, accelerating to failure
    # and large near failure: against the normal variation or against the level itself
    assert quarters[-1] > min(1.5 * healthy[sensor].std(), 0.1 * abs(healthy[sensor].mean()))


@pytest.mark.parametrize("asset_type", ["pump", "motor", "compressor"])
def test_bearing_failure_reaches_iso_zone_d(asset_type: str) -> None:
    zone_d = {"pump": 7.1, "motor": 4.5, "compressor": 11.2}[asset_type]
    _, faulty, _ = faulty_and_healthy(asset_type, "bearing_degradation")
    assert np.median(faulty["vibration"][:30]) < zone_d / 2
    assert np.median(faulty["vibration"][-10:]) > zone_d


def test_worn_tool_is_not_changed_and_wears_out_at_failure() -> None:
    _, faulty, _ = faulty_and_healthy("milling", "tool_wear")
    wear = faulty["tool_wear"]
    assert (np.diff(wear) >= 0).all()  # no tool change while it fails
    assert np.diff(wear)[-20:].mean() > np.diff(wear)[:20].mean()  # wear accelerates
    assert wear[-1] == pytest.approx(250.0, abs=3.0)
    # the raised torque crosses the AI4I overstrain limit (L parts: 11,000 min Nm)
    assert (wear * faulty["torque"])[-10:].mean() > 11_000


def test_failure_happens_at_the_expected_time_and_is_reported_once() -> None:
    machine = Machine("compressor-003", "compressor", 1)
    truth = machine.inject("seal_leak", "medium", T0, timedelta(hours=1))
    assert truth.expected_failure_at == T0 + timedelta(hours=1) and not truth.failed
    assert machine.drain_truth() == [truth]
    machine.step(T0 + timedelta(minutes=59, seconds=59))
    assert machine.drain_truth() == [] and not machine.ground_truth[0].failed
    machine.step(T0 + timedelta(hours=1))
    (failed,) = machine.drain_truth()
    assert failed.failed and failed.expected_failure_at == truth.expected_failure_at
    machine.step(T0 + timedelta(hours=2))
    assert machine.drain_truth() == [] and machine.ground_truth == [failed]


def test_default_ramps_make_critical_fail_sooner_than_low() -> None:
    due = {}
    for severity in SEVERITIES:
        truth = Machine("motor-001", "motor").inject("motor_overheating", severity, T0)
        assert truth.expected_failure_at is not None
        due[severity] = truth.expected_failure_at - T0
    assert due["critical"] < due["high"] < due["medium"] < due["low"]


def test_higher_severity_has_a_larger_effect_over_the_same_ramp() -> None:
    at_failure = {}
    for severity in ("low", "critical"):
        _, faulty, healthy = faulty_and_healthy("motor", "motor_overheating", severity)
        at_failure[severity] = (faulty["current"] - healthy["current"])[-20:].mean()
    assert at_failure["critical"] > 1.2 * at_failure["low"] > 0


def test_degradation_curve_is_monotone_and_saturates() -> None:
    curve = [degradation(s, 100.0, 2.5) for s in range(-10, 130, 5)]
    assert curve == sorted(curve) and curve[0] == 0.0 and curve[-1] == 1.0
    with pytest.raises(ValueError, match="ramp"):
        degradation(1.0, 0.0, 2.0)


def test_clear_removes_the_failure() -> None:
    asset_id = "pump-004"
    faulty, healthy = Machine(asset_id, "pump"), Machine(asset_id, "pump")
    faulty.inject("seal_leak", "critical", T0, timedelta(hours=1))
    times = ticks(T0, MINUTE, 120)
    run(faulty, times[:60]), run(healthy, times[:60])
    cleared = faulty.clear("seal_leak", times[60])
    assert cleared is not None and cleared.cleared_at == times[60]
    assert faulty.ground_truth == [] and faulty.drain_truth()[-1] == cleared
    after, twin = run(faulty, times[60:]), run(healthy, times[60:])
    assert np.array_equal(after["flow"], twin["flow"])
    assert faulty.clear("seal_leak") is None


def test_sensor_interference_is_intermittent_on_one_sensor_and_not_a_failure() -> None:
    machine, faulty, healthy = faulty_and_healthy(
        "pump", "sensor_interference", "critical", timedelta(hours=1), n=600
    )
    (truth,) = machine.ground_truth
    assert truth.sensor == "vibration" and not truth.is_failure
    assert truth.expected_failure_at is None and not truth.failed
    hit = faulty["vibration"] != healthy["vibration"]
    assert 0.05 < hit.mean() < 0.8  # bursts, not a permanent offset
    assert np.abs(faulty["vibration"] - healthy["vibration"]).max() > 1.0  # spikes
    for sensor in sensor_names("pump"):
        if sensor != "vibration":
            assert np.array_equal(faulty[sensor], healthy[sensor]), sensor
    machine.step(T0 + timedelta(days=30))
    assert not machine.ground_truth[0].failed


@pytest.mark.parametrize("asset_type", ASSET_TYPES)
def test_only_the_modes_of_a_type_can_be_injected(asset_type: str) -> None:
    machine = Machine(f"{asset_type}-001", asset_type)  # type: ignore[arg-type]
    allowed = ALLOWED_MODES[asset_type]  # type: ignore[index]
    for mode in ("bearing_degradation", "motor_overheating", "tool_wear", "seal_leak"):
        if mode in allowed:
            machine.inject(mode, "low", T0)
        else:
            with pytest.raises(
                ValueError, match=rf"{mode}.*{asset_type}.*allowed modes: \["
            ) as err:
                machine.inject(mode, "low", T0)
            assert all(m in str(err.value) for m in allowed)


def test_bad_commands_are_rejected_with_clear_errors() -> None:
    machine = Machine("pump-001", "pump")
    with pytest.raises(ValueError, match="unknown failure mode 'explosion'"):
        machine.inject("explosion", "low", T0)
    with pytest.raises(ValueError, match="unknown severity 'extreme'"):
        machine.inject("seal_leak", "extreme", T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        machine.inject("seal_leak", "low", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="ramp must be positive"):
        machine.inject("seal_leak", "low", T0, timedelta(0))
    with pytest.raises(ValueError, match="cannot take interference"):
        machine.inject("sensor_interference", "low", T0, sensor="nonsense")
    machine.inject("seal_leak", "low", T0)
    with pytest.raises(ValueError, match="already active"):
        machine.inject("seal_leak", "high", T0)
    machine.step(T0 + MINUTE)
    with pytest.raises(ValueError, match="backwards"):
        machine.step(T0)
    with pytest.raises(ValueError, match="unknown asset type 'boiler'"):
        Machine("boiler-001", "boiler")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown asset type"):
        Fleet.build({"boiler": 1})


def test_ground_truth_event_is_json() -> None:
    truth = Machine("milling-001", "milling").inject("tool_wear", "high", T0)
    event = json.loads(json.dumps(truth.to_event()))
    assert event["asset_id"] == "milling-001" and event["mode"] == "tool_wear"
    assert event["expected_failure_at"] == "2024-03-04T12:00:00+00:00"
    assert event["is_failure"] is True and event["failed"] is False


# --- AI4I statistics -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_milling_stream_has_ai4i_statistics(seed: int) -> None:
    v = stream("milling", seed=seed, n=3000)
    difference = v["process_temperature"] - v["air_temperature"]
    assert difference.mean() == pytest.approx(10.0, abs=0.4)
    assert 0.6 < difference.std() < 1.5
    assert v["air_temperature"].mean() == pytest.approx(300.0, abs=3.0)
    assert v["torque"].mean() == pytest.approx(40.0, abs=1.0)
    assert v["torque"].std() == pytest.approx(10.0, abs=1.0)
    assert v["rotational_speed"].mean() == pytest.approx(1539.0, abs=40.0)
    assert v["rotational_speed"].std() == pytest.approx(179.0, abs=30.0)
    assert np.corrcoef(v["rotational_speed"], v["torque"])[0, 1] < -0.8
    shares = np.bincount(v["quality_code"].astype(int), minlength=3) / len(v["quality_code"])
    assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.04)
    assert v["tool_wear"].mean() == pytest.approx(110.0, abs=25.0)


def test_tool_wear_adds_5_3_2_minutes_per_part_and_changes_tools() -> None:
    v = stream("milling", n=1000)
    step = np.diff(v["tool_wear"])
    quality = v["quality_code"][1:].astype(int)
    kept = v["tool_wear"][1:] > 0
    assert np.array_equal(step[kept], np.array([2.0, 3.0, 5.0])[quality[kept]])
    changes = v["tool_wear"][:-1][~kept]
    assert len(changes) >= 3 and (changes >= 195).all()  # planned change at 200-240 min


# --- gateway messages ----------------------------------------------------------------------


def test_snapshots_are_valid_gateway_messages() -> None:
    fleet = Fleet.build({t: 2 for t in ASSET_TYPES}, seed=11)
    assert list(fleet.machines)[:3] == ["pump-001", "pump-002", "motor-001"]
    messages = [m for t in ticks(T0, timedelta(seconds=10), 3) for m in fleet.snapshots(t)]
    assert len({m["message_id"] for m in messages}) == len(messages) == 24
    for message in messages:
        snapshot = ReadingSnapshot.model_validate(message)
        assert snapshot.ts.utcoffset() == timedelta(0)
        assert snapshot.asset_type == fleet[snapshot.asset_id].asset_type
        assert set(snapshot.readings) == set(sensor_names(fleet[snapshot.asset_id].asset_type))
    parsed = parse_gateway_message(json.dumps(messages).encode())
    assert [p.asset_id for p in parsed] == [m["asset_id"] for m in messages]


def test_scenarios_cover_the_issue() -> None:
    assert set(SCENARIOS) == {"normal", "high_load", "precision", "cold_environment", "high_speed"}
