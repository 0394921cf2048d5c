"""`pdm replay`: public data set rows become gateway messages the platform and its models take
(names, ids, ordering and time stamps), without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pdm_common.events import parse_gateway_message
from pdm_ml.features import machining
from pdm_tools import replay
from tests.datasets import DATA_DIR, require

DATA = DATA_DIR
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def cmapss_frame(lengths: dict[int, int]) -> pd.DataFrame:
    """A small C-MAPSS-shaped frame (units with the given numbers of cycles), rows shuffled."""
    from pdm_ml.training.cmapss import COLUMNS

    rows = []
    for unit, n in lengths.items():
        for cycle in range(1, n + 1):
            rows.append(
                [unit, cycle, 0.001 * cycle, -0.0003, 100.0]
                + [500.0 + unit + cycle / 10 + i for i in range(21)]
            )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def ai4i_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "UDI": range(1, n + 1),
            "quality": ["LMH"[i % 3] for i in range(n)],
            "air_temperature": [298.0 + i / 10 for i in range(n)],
            "process_temperature": [308.0 + i / 10 for i in range(n)],
            "rotational_speed": [1500 + i for i in range(n)],  # integers in the file
            "torque": [40.0 + i for i in range(n)],
            "tool_wear": [2 * i for i in range(n)],
            "Machine failure": [0] * n,
        }
    )


def test_cmapss_engines_carry_exactly_the_columns_the_rul_model_reads() -> None:
    from pdm_ml.training.cmapss import CYCLE, SENSORS, SETTINGS, RulConfig

    streams = replay.cmapss_streams(cmapss_frame({3: 4, 1: 2, 2: 3}), "FD001")
    assert [s[0].asset_id for s in streams] == [
        "fd001-unit-001",
        "fd001-unit-002",
        "fd001-unit-003",
    ]
    assert [len(s) for s in streams] == [2, 3, 4]
    step = streams[2][1]
    # the model normalises on setting1..3 and reads its context (settings + cycle, the age)
    # and the informative sensors among s1..s21 from stored readings (predictor.rul_sensors)
    assert RulConfig().use_cycle
    assert set(step.readings) == {CYCLE, *SETTINGS, *SENSORS}
    assert step.readings["cycle"] == 2.0 and step.readings["s1"] == pytest.approx(503.2)
    assert (step.asset_type, step.message_id, step.slot) == ("turbofan", "replay:fd001:3:2", 1)
    assert [s.readings["cycle"] for s in streams[2]] == [1.0, 2.0, 3.0, 4.0]  # cycle order
    assert all(type(v) is float for v in step.readings.values())


def test_cmapss_units_picks_the_first_engines_by_id() -> None:
    streams = replay.cmapss_streams(cmapss_frame({5: 2, 2: 2, 9: 2}), "fd003", units=2)
    assert [s[0].asset_id for s in streams] == ["fd003-unit-002", "fd003-unit-005"]
    with pytest.raises(ValueError, match="missing columns"):
        replay.cmapss_streams(pd.DataFrame({"unit": [1]}), "FD001")


def test_ai4i_rows_become_a_few_mills_in_contiguous_blocks_with_the_model_sensor_names():
    streams = replay.ai4i_streams(ai4i_frame(10), machines=3)
    assert [s[0].asset_id for s in streams] == ["ai4i-mill-001", "ai4i-mill-002", "ai4i-mill-003"]
    assert [[int(m.message_id.split(":")[-1]) for m in s] for s in streams] == [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9, 10],
    ]  # consecutive rows: one tool's wear keeps growing on one machine
    step = streams[1][0]
    assert set(step.readings) == {*machining.SENSORS, "quality_code"}
    assert step.readings["quality_code"] == float(machining.QUALITY_CODES["L"])  # UDI 4: "L"
    assert step.readings["rotational_speed"] == 1503.0 and step.asset_type == "milling"
    assert step.message_id == "replay:ai4i:2:4"
    assert [len(s) for s in replay.ai4i_streams(ai4i_frame(10), machines=2, rows=5)] == [2, 3]
    assert len(replay.ai4i_streams(ai4i_frame(2), machines=5)) == 2  # no empty machines


def test_the_prediction_service_would_build_milling_features_from_a_replayed_snapshot() -> None:
    from pdm_prediction.serving import milling_snapshot

    step = replay.ai4i_streams(ai4i_frame(3), machines=1)[0][2]  # UDI 3: quality "H"
    values = milling_snapshot(step.readings, {})  # no attributes: the stored quality_code
    assert values[machining.QUALITY] == "H"
    assert machining.features_row(values)["overstrain"] == pytest.approx(4.0 * 42.0)


def test_fleet_order_ticks_and_time_stamps() -> None:
    streams = replay.cmapss_streams(cmapss_frame({1: 3, 2: 1, 3: 2}), "FD001")
    order = [(s.asset_id[-1], s.slot) for s in replay.interleave(streams)]
    assert order == [("1", 0), ("2", 0), ("3", 0), ("1", 1), ("3", 1), ("1", 2)]
    ticks = list(replay.ticks(streams, per_tick=2))
    assert [(t.number, t.first_slot, t.last_slot, len(t.steps)) for t in ticks] == [
        (0, 0, 1, 5),
        (1, 2, 3, 1),
    ]
    assert [len(t.steps) for t in replay.ticks(streams)] == [3, 2, 1]
    with pytest.raises(ValueError):
        list(replay.ticks(streams, per_tick=0))
    # a backfill ends now: the longest engine's last cycle is stamped `end`
    start = replay.backfill_start(T0, streams, 60.0)
    assert start == T0 - timedelta(minutes=2)
    assert replay.stamp(start, 60.0, 2) == T0


def test_messages_are_valid_gateway_messages_keyed_by_asset_with_stable_ids() -> None:
    streams = replay.cmapss_streams(cmapss_frame({7: 3}), "FD001")
    encoded = [replay.encode(step, T0, 0.5) for step in streams[0]]
    snaps = [parse_gateway_message(value)[0] for _, value in encoded]
    assert [key for key, _ in encoded] == [b"fd001-unit-007"] * 3
    assert [s.ts for s in snaps] == [T0 + timedelta(seconds=0.5 * i) for i in range(3)]
    assert [s.message_id for s in snaps] == [f"replay:fd001:7:{c}" for c in (1, 2, 3)]
    assert {s.asset_type for s in snaps} == {"turbofan"}
    again = [
        replay.encode(step, T0, 0.5)
        for step in replay.cmapss_streams(cmapss_frame({7: 3}), "FD001")[0]
    ]
    assert again == encoded  # same start: same bytes, stored once by ingest's natural key
    assert json.loads(encoded[0][1])["readings"]["cycle"] == 1.0


def test_true_rul_moves_back_by_the_cycles_not_sent() -> None:
    assert replay.cmapss_rul_at(112.0, 31, 31) == 112.0
    assert replay.cmapss_rul_at(112.0, 31, 21) == 122.0


def test_the_real_fd001_test_file_replays_100_engines() -> None:
    from pdm_ml.training.cmapss import read_table

    frame = read_table(require(DATA / "cmapss" / "test_FD001.txt"))
    streams = replay.cmapss_streams(frame, "FD001")
    assert len(streams) == 100 and sum(len(s) for s in streams) == len(frame) == 13_096
    assert [len(s) for s in streams[:2]] == [31, 49]
    ids = [step.message_id for step in replay.interleave(streams)]
    assert len(set(ids)) == len(ids)
    for step in streams[0][:3]:
        parse_gateway_message(replay.encode(step, T0, 60.0)[1])


def test_the_real_ai4i_file_replays_as_three_mills() -> None:
    from pdm_ml.training.ai4i import load_ai4i

    streams = replay.ai4i_streams(
        load_ai4i(require(DATA / "ai4i2020" / "ai4i2020.csv")), machines=3
    )
    assert [len(s) for s in streams] == [3333, 3333, 3334]
    first = streams[0][0]
    assert first.readings == {
        "air_temperature": 298.1,
        "process_temperature": 308.6,
        "rotational_speed": 1551.0,
        "torque": 42.8,
        "tool_wear": 0.0,
        "quality_code": 1.0,
    }
    parse_gateway_message(replay.encode(first, T0, 60.0)[1])
