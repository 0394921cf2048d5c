"""Champions load at start-up, in the background: a missing one is retried, the others serve."""

from __future__ import annotations

import asyncio

from pdm_common.registry import ChampionCache, LoadedModel, NoChampion
from pdm_prediction.predictor import ServedModels


def _cache(available: set[str], calls: list[str]) -> ChampionCache:
    def load(name: str, uri: str, alias: str) -> LoadedModel:
        calls.append(name)
        if name not in available:
            raise NoChampion(name)
        return LoadedModel(name, "7", alias, object(), None, {}, 0.0)

    return ChampionCache("http://registry", loader=load, retry_after_s=0.0)


async def test_preload_loads_every_routed_champion_and_retries_the_missing_one() -> None:
    available = {"failure-pump", "rul-pump"}
    calls: list[str] = []
    models = ServedModels("http://registry", cache=_cache(available, calls))
    names = ["failure-pump", "rul-pump", "failure-motor", "failure-pump"]
    task = asyncio.create_task(models.preload(names, retry_s=0.01))
    await asyncio.sleep(0.05)
    assert models.status(names) == {"failure-motor": None, "failure-pump": "7", "rul-pump": "7"}
    assert not task.done()  # still waiting for the motor's champion
    assert calls.count("failure-pump") == 1  # a loaded model is not fetched again
    assert calls.count("failure-motor") >= 2

    available.add("failure-motor")  # e.g. the first training run finished
    await asyncio.wait_for(task, 1.0)
    assert models.status(names)["failure-motor"] == "7"


async def test_preload_survives_a_broken_artifact() -> None:
    calls: list[str] = []

    def load(name: str, uri: str, alias: str) -> LoadedModel:
        calls.append(name)
        if name == "failure-pump" and calls.count(name) == 1:
            raise ValueError("truncated model file")
        return LoadedModel(name, "1", alias, object(), None, {}, 0.0)

    models = ServedModels("http://registry", cache=ChampionCache("x", loader=load))
    await asyncio.wait_for(models.preload(["failure-pump", "rul-pump"], retry_s=0.01), 1.0)
    assert models.status(["failure-pump", "rul-pump"]) == {"failure-pump": "1", "rul-pump": "1"}
