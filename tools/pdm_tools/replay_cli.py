"""`pdm replay cmapss|ai4i`: public data sets streamed as live assets on `pdm.readings.v1`.

The dataset-to-message logic is in `replay.py` (pure); this module reads the files, keeps
time, publishes in batches (`BrokerPublisher`: send all, then wait for the acks; keyed by
asset id so each asset's readings stay in order) and reports progress. Ctrl-C stops after
the tick being sent, and says how far it got.

`--speed live` (default) stamps each cycle with the current time as it is sent, `--rate-hz`
ticks per second of `--cycles-per-tick` cycles per asset; `--speed max` backfills as fast as
the broker takes it, cycles `--cycle-s` apart, ending now (or starting at `--start`: a re-run
with the same start is then stored once, by ingest's natural key).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pdm_tools.replay import Step
from pdm_tools.train.ai4i import DEFAULT_DATA as AI4I_DEFAULT_DATA
from pdm_tools.train.cmapss import DEFAULT_DATA_DIR as CMAPSS_DEFAULT_DATA_DIR

if TYPE_CHECKING:
    import pandas as pd

    from pdm_common.settings import CommonSettings

replay_app = typer.Typer(
    no_args_is_help=True,
    help="Replay public data sets (C-MAPSS engines, AI4I 2020 mills) as live assets.",
)

SOURCE = "replay"
#: Messages per `publish_many` call when backfilling (send all, then one wait for the acks).
CHUNK = 5000
PROGRESS_EVERY_S = 2.0
HEADERS = {"content-type": "application/json"}

Speed = Annotated[
    str,
    typer.Option(
        help="live: stamp each cycle now, at --rate-hz; max: backfill as fast as possible, "
        "cycles --cycle-s apart, ending now (or from --start)."
    ),
]
RateHz = Annotated[float, typer.Option(min=0.01, max=1000, help="Ticks per second (--speed live).")]
CyclesPerTick = Annotated[
    int, typer.Option(min=1, max=10_000, help="Cycles (rows) per asset per tick.")
]
CycleS = Annotated[
    float, typer.Option(min=0.001, help="Seconds between two cycles' time stamps (--speed max).")
]
Start = Annotated[
    str | None,
    typer.Option(help="ISO time (with offset) of the first cycle (--speed max; default: end now)."),
]
DryRun = Annotated[bool, typer.Option(help="Print the first messages and totals; send nothing.")]


@dataclass(slots=True)
class Plan:
    """What to send and how to time it (built from the options, checked before any I/O)."""

    dataset: str
    streams: list[list[Step]]
    live: bool
    rate_hz: float
    per_tick: int
    cycle_s: float
    start: datetime | None = None

    @property
    def total(self) -> int:
        return sum(len(s) for s in self.streams)

    @property
    def slots(self) -> int:
        return max((len(s) for s in self.streams), default=0)


@dataclass(slots=True)
class Sent:
    messages: int = 0
    last_slot: dict[str, int] = field(default_factory=dict)  # asset id -> last slot sent
    seconds: float = 0.0
    interrupted: bool = False
    first_ts: datetime | None = None
    last_ts: datetime | None = None


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _timing(
    speed: str, rate_hz: float, per_tick: int, cycle_s: float, start: str | None
) -> tuple[bool, float, datetime | None]:
    """(live, cycle spacing in seconds, fixed start) from the options."""
    if speed not in ("live", "max"):
        raise typer.BadParameter(f"--speed {speed!r}: use live or max")
    if speed == "live":
        if start is not None:
            raise typer.BadParameter("--start applies to --speed max (live replay stamps now)")
        return True, 1.0 / (rate_hz * per_tick), None
    fixed = None
    if start is not None:
        try:
            fixed = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            raise typer.BadParameter(f"--start {start!r} is not an ISO time") from None
        if fixed.tzinfo is None:
            raise typer.BadParameter(f"--start {start!r} needs a UTC offset, e.g. ...Z")
    return False, cycle_s, fixed


@replay_app.command("cmapss")
def cmapss(
    subset: Annotated[str, typer.Option(help="C-MAPSS subset (its test engines are sent).")] = (
        "FD001"
    ),
    units: Annotated[
        int | None, typer.Option(min=1, help="Only the first N engines (default: all).")
    ] = None,
    rate_hz: RateHz = 10.0,
    cycles_per_tick: CyclesPerTick = 1,
    speed: Speed = "live",
    cycle_s: CycleS = 60.0,
    start: Start = None,
    data_dir: Annotated[
        Path, typer.Option(help="Folder with test_<subset>.txt (and RUL_<subset>.txt).")
    ] = CMAPSS_DEFAULT_DATA_DIR,
    dry_run: DryRun = False,
) -> None:
    """Stream the C-MAPSS test engines as turbofans (`fd001-unit-007`), one reading per cycle."""
    from pdm_ml.training import cmapss as rul
    from pdm_tools import replay

    live, spacing, fixed = _timing(speed, rate_hz, cycles_per_tick, cycle_s, start)
    subset = subset.upper()
    test_path, truth_path = data_dir / f"test_{subset}.txt", data_dir / f"RUL_{subset}.txt"
    if not data_dir.is_dir():
        raise _fail(
            f"no C-MAPSS data: {data_dir} is not a folder (looked for {test_path.name} there); "
            "pass --data-dir"
        )
    if not test_path.is_file():
        found = sorted(p.name for p in data_dir.glob("test_*.txt"))
        raise _fail(
            f"C-MAPSS {subset}: {test_path} not found (that folder has {found or 'no test_*.txt'})"
            "; pass --subset or --data-dir"
        )
    frame = rul.read_table(test_path)
    streams = replay.cmapss_streams(frame, subset, units)
    plan = Plan(f"C-MAPSS {subset}", streams, live, rate_hz, cycles_per_tick, spacing, fixed)
    sent = _run(plan, dry_run)
    if dry_run:
        return
    truth = _cmapss_truth(truth_path, frame, subset)
    first = streams[0][0].asset_id
    typer.echo(
        "\nPredict a replayed engine (needs ingest running, e.g. `make run`, and an RUL "
        f"champion: `pdm train cmapss --subset {subset}`):\n"
        f"  .venv/bin/pdm predict --asset {first} --asset-type {replay.CMAPSS_ASSET_TYPE}"
    )
    shown = []
    for stream in streams[:5]:
        asset_id = stream[0].asset_id
        done = sent.last_slot.get(asset_id)
        if done is not None and asset_id in truth:
            rul_now = replay.cmapss_rul_at(truth[asset_id], len(stream), done + 1)
            shown.append(f"{asset_id} {rul_now:g}")
    if shown:
        more = ", ..." if len(streams) > 5 else ""
        typer.echo(
            f"  true RUL after the last cycle sent ({truth_path.name}): {', '.join(shown)}{more}"
        )
    if sent.interrupted:
        raise typer.Exit(130)


def _cmapss_truth(path: Path, frame: pd.DataFrame, subset: str) -> dict[str, float]:
    """Asset id -> true RUL after the file's last cycle (`RUL_<subset>.txt` lists one per
    test unit, in unit order); empty when the file is absent."""
    if not path.is_file():
        return {}
    import pandas as pd

    from pdm_tools.replay import cmapss_asset_id

    values = pd.read_csv(path, sep=r"\s+", header=None).iloc[:, 0].astype(float).tolist()
    units = sorted(int(u) for u in frame["unit"].unique())
    return {cmapss_asset_id(subset, u): v for u, v in zip(units, values, strict=False)}


@replay_app.command("ai4i")
def ai4i(
    machines: Annotated[
        int, typer.Option(min=1, max=100, help="Milling machines the rows are split over.")
    ] = 3,
    rows: Annotated[
        int | None, typer.Option(min=1, help="Only the first N rows of the file (default: all).")
    ] = None,
    rate_hz: RateHz = 10.0,
    cycles_per_tick: CyclesPerTick = 1,
    speed: Speed = "live",
    cycle_s: CycleS = 60.0,
    start: Start = None,
    data: Annotated[Path, typer.Option(help="The AI4I 2020 CSV.")] = AI4I_DEFAULT_DATA,
    dry_run: DryRun = False,
) -> None:
    """Stream AI4I 2020 rows as milling machines (`ai4i-mill-001`), one reading per part."""
    from pdm_ml.training.ai4i import Ai4iDataError, load_ai4i
    from pdm_tools import replay

    live, spacing, fixed = _timing(speed, rate_hz, cycles_per_tick, cycle_s, start)
    if not data.is_file():
        raise _fail(f"no AI4I 2020 data: {data} not found; pass --data PATH to ai4i2020.csv")
    try:
        frame = load_ai4i(data)
        streams = replay.ai4i_streams(frame, machines, rows)
    except (Ai4iDataError, ValueError, KeyError) as exc:
        raise _fail(f"{data}: {exc}") from None
    plan = Plan("AI4I 2020", streams, live, rate_hz, cycles_per_tick, spacing, fixed)
    sent = _run(plan, dry_run)
    if dry_run:
        return
    typer.echo(
        "\nPredict a replayed machine (needs ingest running, e.g. `make run`, and a failure "
        "champion: `pdm train ai4i`):\n"
        f"  .venv/bin/pdm predict --asset {streams[0][0].asset_id} "
        f"--asset-type {replay.AI4I_ASSET_TYPE}"
    )
    if sent.interrupted:
        raise typer.Exit(130)


# --- sending -----------------------------------------------------------------------------


def _run(plan: Plan, dry_run: bool) -> Sent:
    from aiokafka.errors import KafkaError

    from pdm_common import topics
    from pdm_common.settings import CommonSettings

    if not plan.streams:
        raise _fail(f"{plan.dataset}: nothing to replay")
    assets = len(plan.streams)
    timing = (
        f"live, {plan.rate_hz:g} ticks/s x {plan.per_tick} cycle(s) per asset"
        if plan.live
        else f"as fast as possible, time stamps {plan.cycle_s:g} s apart"
    )
    if dry_run:
        _dry_run(plan)
        return Sent()
    settings = CommonSettings()
    typer.echo(
        f"replaying {plan.dataset}: {assets} assets, {plan.total:,} readings "
        f"({plan.slots} cycles for the longest) to {topics.READINGS} at "
        f"{settings.kafka_bootstrap}; {timing}. Ctrl-C stops."
    )
    try:
        sent = asyncio.run(_send(plan, settings, typer.echo))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _fail(
            f"cannot publish to Kafka at {settings.kafka_bootstrap}: {exc!r}. Is the stack up "
            "(`make run` or `pdm stack up`)? PDM_KAFKA_BOOTSTRAP says where it is.",
            code=1,
        ) from None
    span = (
        f", stamped {sent.first_ts.isoformat()} .. {sent.last_ts.isoformat()}"
        if sent.first_ts and sent.last_ts
        else ""
    )
    verb = "stopped (Ctrl-C) after" if sent.interrupted else "sent"
    typer.echo(
        f"{verb} {sent.messages:,} of {plan.total:,} readings of {len(sent.last_slot)} assets "
        f"in {sent.seconds:.1f} s{span}"
    )
    return sent


def _dry_run(plan: Plan, show: int = 3) -> None:
    import json

    from pdm_tools import replay

    start = plan.start or datetime.now(UTC)
    if not plan.live and plan.start is None:
        start = replay.backfill_start(start, plan.streams, plan.cycle_s)
    for step in replay.interleave(plan.streams)[:show]:
        typer.echo(json.dumps(replay.message(step, replay.stamp(start, plan.cycle_s, step.slot))))
    typer.echo(
        f"dry run: {plan.dataset}, {len(plan.streams)} assets, {plan.total:,} readings, "
        f"{plan.slots} cycles for the longest; nothing sent"
    )


async def _send(plan: Plan, settings: CommonSettings, echo: Callable[[str], None]) -> Sent:
    from pdm_common import topics
    from pdm_common.broker import BrokerPublisher, ensure_topics
    from pdm_common.delivery import Outgoing
    from pdm_tools import replay

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await ensure_topics(
        settings.kafka_bootstrap, [topics.READINGS], partitions=settings.kafka_partitions
    )
    publisher = BrokerPublisher(settings, SOURCE)
    await publisher.start()
    sent = Sent()
    began = time.monotonic()
    start = plan.start or datetime.now(UTC)
    if not plan.live and plan.start is None:
        start = replay.backfill_start(start, plan.streams, plan.cycle_s)
    reported = began
    buffer: list[Outgoing] = []
    pending: list[Step] = []

    async def flush() -> None:
        nonlocal buffer, pending
        if not buffer:
            return
        await publisher.publish_many(buffer)
        sent.messages += len(buffer)
        for step in pending:
            sent.last_slot[step.asset_id] = step.slot
        sent.last_ts = replay.stamp(start, plan.cycle_s, pending[-1].slot)
        if sent.first_ts is None:
            sent.first_ts = replay.stamp(start, plan.cycle_s, pending[0].slot)
        buffer, pending = [], []

    try:
        for tick in replay.ticks(plan.streams, plan.per_tick):
            if plan.live:  # send a tick when its last cycle is due: nothing stamped ahead
                delay = began + tick.last_slot * plan.cycle_s - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                sent.interrupted = True
                break
            for step in tick.steps:
                key, value = replay.encode(step, start, plan.cycle_s)
                buffer.append(Outgoing(topics.READINGS, value, key, HEADERS))
                pending.append(step)
            if plan.live or len(buffer) >= CHUNK:
                await flush()
            now = time.monotonic()
            if now - reported >= PROGRESS_EVERY_S:
                reported = now
                _progress(echo, plan, sent, tick.last_slot)
        await flush()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await publisher.stop()
        sent.seconds = time.monotonic() - began
    return sent


def _progress(echo: Callable[[str], None], plan: Plan, sent: Sent, slot: int) -> None:
    reporting = sum(1 for s in plan.streams if len(s) > slot)
    echo(
        f"  {sent.messages:,}/{plan.total:,} readings sent, cycle {slot + 1}/{plan.slots}, "
        f"{reporting} assets still reporting"
    )
