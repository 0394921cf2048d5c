"""Public data sets replayed as live assets (pure: dataset rows in, gateway messages out).

`pdm replay cmapss` turns each NASA C-MAPSS *test* engine into a turbofan that reports one
snapshot per cycle; `pdm replay ai4i` turns the AI4I 2020 rows into a few milling machines
that report one snapshot per machined part. The I/O (files, Kafka, clock) is in
`replay_cli.py`; everything here is deterministic and tested.

Sensor names are the ones the served models read, so a replayed asset can be predicted from
its stored readings: a turbofan sends `cycle`, `setting1..3` and `s1..s21` (the columns
`training.cmapss` trains on, `cycle` being the engine's age that the RUL model's context
uses); a milling machine sends `machining.SENSORS` plus `quality_code` (0/1/2 = L/M/H), as
the simulator's mills do.

Time: all assets report together, slot by slot (every engine's cycle 1, then every engine's
cycle 2, ...; an engine whose record ends stops reporting). Slot `k` is stamped
`start + k * cycle_s`. Live replay sends a tick of `per_tick` slots when its last slot is due
(so nothing is stamped in the future); a backfill sends as fast as the broker takes it.

Message ids are stable per (dataset, unit, cycle / row), e.g. `replay:fd001:7:12`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pdm_ml.features import machining

if TYPE_CHECKING:
    import pandas as pd

CMAPSS_ASSET_TYPE = "turbofan"
AI4I_ASSET_TYPE = "milling"
#: Columns of a C-MAPSS file sent as readings, in file order (`training.cmapss.COLUMNS`
#: without `unit`; kept literal so this module does not import the training code).
CMAPSS_READINGS: tuple[str, ...] = (
    "cycle",
    "setting1",
    "setting2",
    "setting3",
    *(f"s{i}" for i in range(1, 22)),
)
AI4I_READINGS: tuple[str, ...] = (*machining.SENSORS, "quality_code")
AI4I_ID_COLUMN = "UDI"


@dataclass(frozen=True, slots=True)
class Step:
    """One snapshot of one replayed asset. `slot` is its position in the asset's stream
    (0 for the first cycle or row), which decides its time stamp."""

    asset_id: str
    asset_type: str
    slot: int
    message_id: str
    readings: dict[str, float]


@dataclass(frozen=True, slots=True)
class Tick:
    """Slots `[first_slot, first_slot + per_tick)` of every asset still reporting."""

    number: int
    first_slot: int
    last_slot: int
    steps: list[Step]


def cmapss_asset_id(subset: str, unit: int) -> str:
    return f"{subset.lower()}-unit-{unit:03d}"


def ai4i_asset_id(machine: int) -> str:
    return f"ai4i-mill-{machine:03d}"


def cmapss_streams(frame: pd.DataFrame, subset: str, units: int | None = None) -> list[list[Step]]:
    """One stream per engine of a C-MAPSS frame (`training.cmapss.read_table`), engines in
    ascending id (the first `units` of them), each in cycle order."""
    missing = [c for c in ("unit", *CMAPSS_READINGS) if c not in frame.columns]
    if missing:
        raise ValueError(f"not a C-MAPSS frame: missing columns {missing}")
    dataset = subset.lower()
    ids = sorted(int(u) for u in frame["unit"].unique())
    chosen = ids if units is None else ids[:units]
    streams: list[list[Step]] = []
    for unit in chosen:
        rows = frame[frame["unit"] == unit].sort_values("cycle")
        asset_id = cmapss_asset_id(subset, unit)
        stream = []
        for slot, values in enumerate(rows[list(CMAPSS_READINGS)].itertuples(index=False)):
            readings = {name: float(v) for name, v in zip(CMAPSS_READINGS, values, strict=True)}
            cycle = int(readings["cycle"])
            stream.append(
                Step(
                    asset_id,
                    CMAPSS_ASSET_TYPE,
                    slot,
                    f"replay:{dataset}:{unit}:{cycle}",
                    readings,
                )
            )
        streams.append(stream)
    return streams


def ai4i_streams(
    frame: pd.DataFrame, machines: int = 3, rows: int | None = None
) -> list[list[Step]]:
    """The AI4I rows (`training.ai4i.load_ai4i`: platform sensor names and `quality`) in file
    order, the first `rows` of them, cut into `machines` contiguous blocks: consecutive rows
    are one tool's life (its wear grows part by part until the tool is changed), so each
    machine keeps a coherent history. Failure labels are not sent."""
    if machines < 1:
        raise ValueError(f"machines must be >= 1, got {machines}")
    missing = [c for c in (AI4I_ID_COLUMN, *machining.SENSORS, machining.QUALITY) if c not in frame]
    if missing:
        raise ValueError(f"not an AI4I 2020 frame: missing columns {missing}")
    data = frame if rows is None else frame.iloc[:rows]
    n = len(data)
    bounds = [n * m // machines for m in range(machines + 1)]
    streams: list[list[Step]] = []
    for m in range(machines):
        block = data.iloc[bounds[m] : bounds[m + 1]]
        asset_id = ai4i_asset_id(m + 1)
        stream = []
        columns = [AI4I_ID_COLUMN, *machining.SENSORS, machining.QUALITY]
        for slot, values in enumerate(block[columns].itertuples(index=False)):
            udi, *sensors, quality = values
            readings = {name: float(v) for name, v in zip(machining.SENSORS, sensors, strict=True)}
            readings["quality_code"] = float(machining.QUALITY_CODES[str(quality).strip()])
            stream.append(
                Step(asset_id, AI4I_ASSET_TYPE, slot, f"replay:ai4i:{m + 1}:{int(udi)}", readings)
            )
        if stream:
            streams.append(stream)
    return streams


def interleave(streams: Sequence[Sequence[Step]]) -> list[Step]:
    """Every asset's slot 0, then every asset's slot 1, ...: the order a fleet reports in
    (each asset's own steps stay in order; a finished asset drops out)."""
    keyed = [(step.slot, i, step) for i, stream in enumerate(streams) for step in stream]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [step for _, _, step in keyed]


def ticks(streams: Sequence[Sequence[Step]], per_tick: int = 1) -> Iterator[Tick]:
    """The replay cut into ticks of `per_tick` slots (every asset's next `per_tick` steps)."""
    if per_tick < 1:
        raise ValueError(f"per_tick must be >= 1, got {per_tick}")
    current: list[Step] = []
    number = 0
    for step in interleave(streams):
        while step.slot >= (number + 1) * per_tick:
            if current:
                yield _tick(number, per_tick, current)
                current = []
            number += 1
        current.append(step)
    if current:
        yield _tick(number, per_tick, current)


def _tick(number: int, per_tick: int, steps: list[Step]) -> Tick:
    return Tick(number, number * per_tick, (number + 1) * per_tick - 1, steps)


def stamp(start: datetime, cycle_s: float, slot: int) -> datetime:
    """Time stamp of slot `slot`."""
    return start + timedelta(seconds=slot * cycle_s)


def backfill_start(end: datetime, streams: Sequence[Sequence[Step]], cycle_s: float) -> datetime:
    """The start that puts the last slot of the longest stream at `end` (a backfill that
    ends now, so the replayed history is fresh for the prediction service)."""
    longest = max((len(s) for s in streams), default=0)
    return end - timedelta(seconds=max(longest - 1, 0) * cycle_s)


def message(step: Step, ts: datetime) -> dict[str, Any]:
    """The gateway message (`events.ReadingSnapshot`) of one step."""
    return {
        "asset_id": step.asset_id,
        "ts": ts.isoformat(),
        "readings": step.readings,
        "message_id": step.message_id,
        "asset_type": step.asset_type,
    }


def encode(step: Step, start: datetime, cycle_s: float) -> tuple[bytes, bytes]:
    """(key, value) of one step's Kafka message: keyed by asset id, JSON value."""
    body = message(step, stamp(start, cycle_s, step.slot))
    return step.asset_id.encode(), json.dumps(body, separators=(",", ":")).encode()


def cmapss_rul_at(true_rul: float, cycles_in_file: int, cycles_sent: int) -> float:
    """True RUL after the last cycle sent: `RUL_FD00x.txt` gives it after the file's last
    cycle, so every cycle not sent adds one."""
    return true_rul + (cycles_in_file - cycles_sent)
