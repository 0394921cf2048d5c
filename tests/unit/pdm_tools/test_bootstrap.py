"""`make run`'s preparation: which initial models it trains, and the demo key it reuses."""

from __future__ import annotations

from pathlib import Path

from pdm_tools import bootstrap


def test_only_models_without_a_champion_are_trained_each_command_once() -> None:
    models = (
        ("failure-pump", ("train", "simulated", "--asset-type", "pump")),
        ("rul-pump", ("train", "simulated", "--asset-type", "pump")),
        ("failure-milling", ("train", "ai4i")),
        ("rul-turbofan", ("train", "cmapss")),
    )
    have = {"failure-milling"}
    todo = bootstrap.missing_models(lambda name: name in have, models)
    assert todo == [
        ("failure-pump", ("train", "simulated", "--asset-type", "pump")),
        ("rul-turbofan", ("train", "cmapss")),
    ]
    assert bootstrap.missing_models(lambda name: True, models) == []


def test_every_served_model_has_an_initial_training_command() -> None:
    from pdm_prediction.serving import DEFAULT_ROUTES

    served = {name for parts in DEFAULT_ROUTES.values() for name in parts.values()}
    assert served <= {name for name, _ in bootstrap.INITIAL_MODELS}


def test_a_stored_key_that_is_not_live_is_replaced(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / bootstrap.API_KEY_FILE).write_text("pdm_000000000000_" + "a" * 43)
    created: list[list[str]] = []

    class Done:
        stdout = "pdm_111111111111_" + "b" * 43 + "\n"

    def fake_run(args, **_):  # type: ignore[no-untyped-def]
        created.append(args)
        return Done()

    monkeypatch.setattr(bootstrap.subprocess, "run", fake_run)
    token = bootstrap.demo_api_key(tmp_path, {})  # no database: the stored key is not live
    assert token == "pdm_111111111111_" + "b" * 43
    assert "create" in created[0] and "admin" in created[0]
    assert (tmp_path / bootstrap.API_KEY_FILE).read_text().strip() == token
    assert (tmp_path / bootstrap.API_KEY_FILE).stat().st_mode & 0o077 == 0


def test_initial_training_runs_in_the_background_and_reports_progress(tmp_path: Path) -> None:
    """Each missing model's command runs in turn off the caller's thread; a failure is
    counted and the next one still runs; the status line says where it is."""
    import time

    training = bootstrap.InitialTraining({}, "http://127.0.0.1:9", tmp_path / "training.log")
    training.todo = [("ok-model", ("--help",)), ("bad-model", ("no-such-command",))]
    assert training.status() == "training 0/2"
    training.start()
    deadline = time.monotonic() + 60
    while len(training.done) + len(training.failed) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    training.stop()
    assert (training.done, training.failed) == (["ok-model"], ["bad-model"])
    assert "1 failed" in training.status()
    log = (tmp_path / "training.log").read_text()
    assert "== ok-model: pdm --help" in log and "== bad-model" in log
