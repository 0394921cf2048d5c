"""`pdm replay` into the real broker: what arrives on `pdm.readings.v1` is what a gateway
would send, keyed by asset, in cycle order per asset (ingest is not needed for this)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from pdm_common.events import parse_gateway_message

from .harness import REPO, read_topic

pytestmark = pytest.mark.integration


def pdm(kafka: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", *args],
        env=os.environ | {"PDM_KAFKA_BOOTSTRAP": kafka},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


async def test_replay_cmapss_and_ai4i_backfill_into_the_broker(kafka):
    started = datetime.now(UTC)
    out = pdm(kafka, "replay", "cmapss", "--subset", "FD001", "--units", "2", "--speed", "max")
    assert "sent 80 of 80 readings of 2 assets" in out.stdout
    assert "pdm predict --asset fd001-unit-001 --asset-type turbofan" in out.stdout
    assert "fd001-unit-001 112, fd001-unit-002 98" in out.stdout  # RUL_FD001.txt

    records = await read_topic(kafka, "pdm.readings.v1", idle_ms=1000)
    snaps = [(r, parse_gateway_message(r.value)[0]) for r in records]
    assert len(snaps) == 80
    assert all(r.key == s.asset_id.encode() for r, s in snaps)
    by_asset: dict[str, list] = {}
    for _, s in sorted(snaps, key=lambda p: (p[0].partition, p[0].offset)):
        by_asset.setdefault(s.asset_id, []).append(s)
    assert {a: len(v) for a, v in by_asset.items()} == {"fd001-unit-001": 31, "fd001-unit-002": 49}
    expected = {"cycle", "setting1", "setting2", "setting3", *(f"s{i}" for i in range(1, 22))}
    for asset_id, stream in by_asset.items():
        unit = int(asset_id[-3:])
        assert [s.readings["cycle"] for s in stream] == [
            float(c) for c in range(1, len(stream) + 1)
        ]
        assert [s.message_id for s in stream] == [
            f"replay:fd001:{unit}:{c}" for c in range(1, len(stream) + 1)
        ]
        assert all(set(s.readings) == expected and s.asset_type == "turbofan" for s in stream)
        times = [s.ts for s in stream]
        assert all(b - a == timedelta(seconds=60) for a, b in pairwise(times))
    # the backfill ends now: the longest engine's last cycle is fresh for the prediction service
    last = by_asset["fd001-unit-002"][-1].ts
    assert started - timedelta(seconds=5) < last < datetime.now(UTC) + timedelta(seconds=1)

    pdm(kafka, "replay", "ai4i", "--machines", "2", "--rows", "20", "--speed", "max")
    mills = [
        parse_gateway_message(r.value)[0]
        for r in await read_topic(kafka, "pdm.readings.v1", idle_ms=1000)
    ]
    mills = [s for s in mills if s.asset_type == "milling"]
    assert sorted({s.asset_id for s in mills}) == ["ai4i-mill-001", "ai4i-mill-002"]
    assert sorted(int(s.message_id.rsplit(":", 1)[1]) for s in mills) == list(range(1, 21))
    assert {frozenset(s.readings) for s in mills} == {
        frozenset(
            {
                "air_temperature",
                "process_temperature",
                "rotational_speed",
                "torque",
                "tool_wear",
                "quality_code",
            }
        )
    }
