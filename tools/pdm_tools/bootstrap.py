"""What `make run` prepares around the services: the initial models (trained in the
background once the platform runs, only when the registry has no champion for them), the
demo API key and the demo maintenance crew."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import typer

#: Registered model -> the `pdm` command that trains, registers and promotes it.
INITIAL_MODELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("failure-milling", ("train", "ai4i")),
    ("rul-turbofan", ("train", "cmapss", "--subset", "FD001")),
    *(
        (f"{part}-{kind}", ("train", "simulated", "--asset-type", kind))
        for kind in ("pump", "motor", "compressor")
        for part in ("failure", "rul")
    ),
)
API_KEY_FILE = "api-key"
#: Initial models trained from a public data set: the files they read under `PDM_DATA_DIR`
#: (a clone without them still trains the simulated fleet, which needs no download).
NEEDS_DATA: dict[str, tuple[str, ...]] = {
    "failure-milling": ("ai4i2020/ai4i2020.csv",),
    "rul-turbofan": tuple(f"cmapss/{kind}_FD001.txt" for kind in ("train", "test", "RUL")),
}


def missing_models(
    has_champion: Callable[[str], bool],
    models: Sequence[tuple[str, tuple[str, ...]]] = INITIAL_MODELS,
) -> list[tuple[str, tuple[str, ...]]]:
    """The models without a champion; each training command once (one command may register
    several models, e.g. a failure and a RUL model of one asset type)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, command in models:
        if not has_champion(name) and command not in [c for _, c in out]:
            out.append((name, command))
    return out


def without_data(
    todo: Sequence[tuple[str, tuple[str, ...]]],
    data_dir: Path,
    needs: Mapping[str, Sequence[str]] = NEEDS_DATA,
) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, str]]]:
    """Split the plan into what can train and (model, why not) for those whose data set is
    not under `data_dir`: a missing file would only fail the training minutes later, in a
    red line that reads like a bug instead of a download to make."""
    from pdm_tools.data import absent, dataset_of

    runnable: list[tuple[str, tuple[str, ...]]] = []
    skipped: list[tuple[str, str]] = []
    for name, command in todo:
        missing = absent(needs.get(name, ()), data_dir)
        if not missing:
            runnable.append((name, command))
            continue
        rel = [str(p.relative_to(data_dir)) for p in missing]
        dataset = dataset_of(rel[0])
        skipped.append(
            (
                name,
                f"no {dataset.short} data under {data_dir} (missing "
                f"{', '.join(rel)}; `.venv/bin/pdm data check` says where to get it, then "
                f"`.venv/bin/pdm {' '.join(command)}`)",
            )
        )
    return runnable, skipped


def registry_has_champion(tracking_uri: str) -> Callable[[str], bool]:
    from pdm_common import registry

    def check(name: str) -> bool:
        try:
            registry.get_version(name, tracking_uri=tracking_uri)
        except registry.RegistryError:
            return False
        return True

    return check


class InitialTraining:
    """Trains what the registry lacks, one `pdm train ...` after the other, in a background
    thread while the platform already runs (`make run` answers first, trains afterwards).
    Each pipeline's output goes to `log`; `status()` is the status line's part. Every
    training promotes and announces its champion on `pdm.models.v1`, so the running
    services pick it up without a restart; a failed training is reported and skipped (those
    predictions answer `no_champion` until `pdm train ...` succeeds). A model whose public
    data set is not under `PDM_DATA_DIR` is not started at all: `skipped` says why."""

    def __init__(self, env: Mapping[str, str], tracking_uri: str, log: Path) -> None:
        from pdm_tools.paths import data_dir

        self.env = dict(env)
        self.tracking_uri = tracking_uri
        self.log = log
        #: Where the training commands (children with `env`) will look for the data sets.
        self.data_dir = data_dir(self.env)
        self.todo: list[tuple[str, tuple[str, ...]]] = []
        #: (model, why) for models left untrained because their data set is not there.
        self.skipped: list[tuple[str, str]] = []
        self.done: list[str] = []
        self.failed: list[str] = []
        self.current: str | None = None
        self.started = 0.0
        self._child: subprocess.Popen[bytes] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="initial-training", daemon=True)

    def plan(self) -> list[tuple[str, tuple[str, ...]]]:
        """What will be trained (asks the registry once); models whose data set is missing
        go to `skipped` instead."""
        todo = missing_models(registry_has_champion(self.tracking_uri))
        self.todo, self.skipped = without_data(todo, self.data_dir)
        return self.todo

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
        self._thread.join(timeout=20)

    def status(self) -> str:
        skipped = (
            f"; skipped (no data set) {', '.join(name for name, _ in self.skipped)}"
            if self.skipped
            else ""
        )
        if not self.todo:
            return skipped.removeprefix("; ")
        finished = len(self.done) + len(self.failed)
        if self.current is not None:
            took = time.monotonic() - self.started
            return (
                f"training {finished + 1}/{len(self.todo)} {self.current} ({took:.0f}s)" + skipped
            )
        if finished == len(self.todo):
            failed = f", {len(self.failed)} failed (see {self.log})" if self.failed else ""
            return f"models trained{failed}{skipped}"
        return f"training {finished}/{len(self.todo)}{skipped}"

    def _run(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            for name, command in self.todo:
                if self._stopped.is_set():
                    return
                self.current, self.started = name, time.monotonic()
                out.write(f"== {name}: pdm {' '.join(command)}\n".encode())
                out.flush()
                self._child = subprocess.Popen(
                    [sys.executable, "-m", "pdm_tools.cli", *command],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                code = self._child.wait()
                self.current = None
                if code == 0:
                    self.done.append(name)
                    continue
                self.failed.append(name)
                if not self._stopped.is_set():
                    typer.secho(
                        f"   training {name} failed (exit {code}); the platform runs without "
                        f"it: see {self.log}, retry with `.venv/bin/pdm {' '.join(command)}`",
                        fg="red",
                    )


def demo_api_key(state_dir: Path, env: Mapping[str, str]) -> str:
    """The admin key `make run` prints: reused while it is live, else created (and kept in
    `<state dir>/api-key`, readable by the owner only)."""
    path = state_dir / API_KEY_FILE
    if path.exists():
        token = path.read_text().strip()
        if _key_is_live(token, env.get("PDM_DATABASE_URL", "")):
            return token
    result = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", "apikey", "create", "--name", "make-run",
         "--scopes", "admin", "--quiet"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    token = result.stdout.strip()
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return token


def _key_is_live(token: str, database_url: str) -> bool:
    import psycopg

    from pdm_gateway.keys import hash_secret, parse_token

    parsed = parse_token(token)
    if parsed is None or not database_url:
        return False
    try:
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT secret_sha256 FROM api_keys WHERE key_id = %s AND revoked_at IS NULL",
                [parsed[0]],
            ).fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == hash_secret(parsed[1])


#: The simulated fleet's maintenance crew (`make run`): two shifts of mechanics, an
#: electrician, and an on-call technician at a premium who covers nights and weekends, so a
#: failure injected at any hour has someone qualified to plan it on.
WEEKDAYS = [0, 1, 2, 3, 4]
DEMO_CREW: tuple[dict[str, object], ...] = (
    {
        "technician_id": "tech-anna",
        "name": "Anna (mechanic, early shift)",
        "skills": ["mechanical", "machining"],
        "shifts": [{"days": WEEKDAYS, "start": "06:00", "end": "14:00"}],
        "hourly_cost": 45.0,
    },
    {
        "technician_id": "tech-ben",
        "name": "Ben (mechanic, late shift)",
        "skills": ["mechanical"],
        "shifts": [{"days": WEEKDAYS, "start": "14:00", "end": "22:00"}],
        "hourly_cost": 45.0,
    },
    {
        "technician_id": "tech-chen",
        "name": "Chen (electrician)",
        "skills": ["electrical", "instrumentation"],
        "shifts": [{"days": WEEKDAYS, "start": "06:00", "end": "14:00"}],
        "hourly_cost": 55.0,
    },
    {
        "technician_id": "tech-oncall",
        "name": "On-call technician",
        "skills": ["mechanical", "electrical"],
        "shifts": [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "00:00"}],
        "hourly_cost": 90.0,
    },
)
CREW_NS = uuid.UUID("a1d2c3b4-0000-4000-8000-00000000c0de")


def demo_crew_commands() -> list[dict[str, object]]:
    """`technician.upsert` commands for the demo crew, with fixed command ids: sent again
    by every `make run`, each is applied once (a crew edited later stays edited)."""
    return [
        {
            "command_id": str(uuid.uuid5(CREW_NS, str(t["technician_id"]))),
            "action": "technician.upsert",
            "actor": "bootstrap",
            "technician": t,
        }
        for t in DEMO_CREW
    ]


async def seed_demo_crew(bootstrap: str) -> int:
    """Queue the demo crew on `pdm.maintenance.commands.v1` (the scheduler applies them when
    it is up; nobody waits for an answer)."""
    from aiokafka import AIOKafkaProducer

    from pdm_common import topics

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        commands = demo_crew_commands()
        for c in commands:
            technician = c["technician"]
            assert isinstance(technician, dict)
            await producer.send_and_wait(
                topics.MAINTENANCE_COMMANDS,
                json.dumps(c).encode(),
                key=str(technician["technician_id"]).encode(),
            )
        return len(commands)
    finally:
        await producer.stop()
