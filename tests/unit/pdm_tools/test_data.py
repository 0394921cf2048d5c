"""`pdm data check`, the data directory's default, and `make run` without the data sets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdm_tools import bootstrap, data, paths
from pdm_tools.cli import app
from tests.datasets import DATA_DIR, require

GOOD = b"unit,cycle\n1,1\n"
TINY = (
    data.DataSet(
        name="tiny",
        short="Tiny",
        title="A tiny data set",
        publisher="The publisher",
        url="https://example.org/tiny",
        licence="CC0",
        used_by="these tests",
        files=(
            data.DataFile(
                "tiny/good.csv",
                "`good.csv` in the zip",
                (data.Digest(len(GOOD), hashlib.sha256(GOOD).hexdigest()),),
            ),
            data.DataFile(
                "tiny/other.csv",
                "`other.csv` in the zip",
                (data.Digest(len(GOOD), hashlib.sha256(GOOD).hexdigest()),),
            ),
            data.DataFile(
                "tiny/extra.csv",
                "`extra.csv` in the zip",
                (data.Digest(len(GOOD), hashlib.sha256(GOOD).hexdigest()),),
                required=False,
            ),
        ),
    ),
)


def _write(root: Path, name: str, body: bytes) -> None:
    (root / "tiny").mkdir(parents=True, exist_ok=True)
    (root / "tiny" / name).write_bytes(body)


def test_a_good_file_passes_and_a_missing_one_says_where_to_get_it(tmp_path: Path) -> None:
    _write(tmp_path, "good.csv", GOOD)
    good, other, extra = data.check(tmp_path, TINY)
    assert (good.status, good.problem) == ("ok", False)
    assert (other.status, other.problem) == ("missing", True)
    assert other.advice() == (
        f"get `other.csv` in the zip from https://example.org/tiny and put it at "
        f"{tmp_path / 'tiny' / 'other.csv'}"
    )
    assert (extra.status, extra.problem) == ("missing", False)  # optional: not an error


def test_a_corrupted_file_is_wrong_whether_its_size_differs_or_only_its_bytes(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "good.csv", GOOD.replace(b"1,1", b"1,2"))  # same size, other bytes
    _write(tmp_path, "other.csv", GOOD[:-3])  # truncated
    _write(tmp_path, "extra.csv", GOOD + b"2,1\n")  # optional, but present and wrong
    results = data.check(tmp_path, TINY)
    assert [r.status for r in results] == ["mismatch"] * 3
    assert all(r.problem for r in results)
    assert "sha256" in results[0].detail
    assert f"{len(GOOD) - 3} bytes, expected {len(GOOD)}" == results[1].detail


def test_every_accepted_form_of_a_file_passes(tmp_path: Path) -> None:
    other = b"{}\n"
    dataset = TINY[0]
    two_forms = data.DataFile(
        "tiny/good.csv",
        "`good.csv`",
        (
            data.Digest(len(GOOD), hashlib.sha256(GOOD).hexdigest()),
            data.Digest(len(other), hashlib.sha256(other).hexdigest()),
        ),
    )
    _write(tmp_path, "good.csv", other)
    assert data.check_file(dataset, two_forms, tmp_path).status == "ok"


def test_the_command_exits_non_zero_and_reports_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "MANIFEST", TINY)
    monkeypatch.setenv("PDM_DATA_DIR", str(tmp_path))
    _write(tmp_path, "good.csv", GOOD)
    result = CliRunner().invoke(app, ["data", "check", "--json"])
    assert result.exit_code == 1, result.output
    answer = json.loads(result.output)
    assert answer["data_dir"] == str(tmp_path) and answer["ok"] is False
    by_file = {f["file"]: f for f in answer["files"]}
    assert by_file["tiny/good.csv"]["status"] == "ok"
    assert (
        by_file["tiny/other.csv"] | {"status": "missing", "problem": True}
        == by_file["tiny/other.csv"]
    )
    assert by_file["tiny/other.csv"]["source"] == "https://example.org/tiny"
    assert by_file["tiny/other.csv"]["path"] == str(tmp_path / "tiny" / "other.csv")

    _write(tmp_path, "other.csv", GOOD)  # the optional file may stay missing
    result = CliRunner().invoke(app, ["data", "check"])
    assert result.exit_code == 0, result.output
    assert "3 files: 2 ok, 1 missing, 0 wrong" in result.output
    assert "put it at " + str(tmp_path / "tiny" / "extra.csv") in result.output

    unknown = CliRunner().invoke(app, ["data", "check", "nope"])
    assert unknown.exit_code == 2


def test_the_committed_checksums_are_those_of_the_local_copies() -> None:
    """The manifest against the copies the published results were measured on (skipped on a
    machine without them, failed under CI like every data-set test)."""
    for dataset in data.MANIFEST:
        for file in dataset.files:
            require(DATA_DIR / file.path)
    bad = [(r.file.path, r.detail) for r in data.check(DATA_DIR) if r.status != "ok"]
    assert bad == []


def test_the_data_directory_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout, shared = tmp_path / "repo" / "data", tmp_path / "shared" / "data"
    monkeypatch.setattr(paths, "CHECKOUT_DATA_DIR", checkout)
    monkeypatch.setattr(paths, "SHARED_DATA_DIR", shared)
    assert paths.data_dir({"PDM_DATA_DIR": "/somewhere"}) == Path("/somewhere")
    assert paths.data_dir({}) == checkout  # a plain clone: where the messages say to put it
    shared.mkdir(parents=True)
    assert paths.data_dir({}) == shared  # a machine with one shared copy
    checkout.mkdir(parents=True)
    assert paths.data_dir({}) == checkout  # the checkout's own copy wins
    assert paths.data_dir({"PDM_DATA_DIR": str(shared)}) == shared


def test_the_readme_names_each_data_sets_source_and_licence() -> None:
    readme = (paths.REPO_ROOT / "README.md").read_text()
    table = data.sources_markdown()
    assert table in readme, "paste `.venv/bin/pdm data sources` into the README"
    assert all(d.url in table and d.licence in table for d in data.MANIFEST)


def test_initial_training_files_are_required_files_of_the_manifest() -> None:
    for name, files in bootstrap.NEEDS_DATA.items():
        assert name in {model for model, _ in bootstrap.INITIAL_MODELS}
        for path in files:
            dataset = data.dataset_of(path)
            assert next(f for f in dataset.files if f.path == path).required


def test_make_run_without_data_trains_the_simulated_fleet_and_says_what_it_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "registry_has_champion", lambda uri: lambda name: False)
    empty = tmp_path / "no-data"
    training = bootstrap.InitialTraining({"PDM_DATA_DIR": str(empty)}, "x", tmp_path / "log")
    todo = training.plan()
    assert [command[:2] for _, command in todo] == [("train", "simulated")] * 3
    skipped = dict(training.skipped)
    assert set(skipped) == {"failure-milling", "rul-turbofan"}
    assert "no AI4I 2020 data under " + str(empty) in skipped["failure-milling"]
    assert "ai4i2020/ai4i2020.csv" in skipped["failure-milling"]
    assert "pdm data check" in skipped["rul-turbofan"]
    assert "pdm train cmapss --subset FD001" in skipped["rul-turbofan"]
    assert training.status() == (
        "training 0/3; skipped (no data set) failure-milling, rul-turbofan"
    )

    training.todo = []  # e.g. the simulated fleet already has champions
    assert training.status() == "skipped (no data set) failure-milling, rul-turbofan"


def test_make_run_with_the_data_trains_everything(tmp_path: Path) -> None:
    for path in (p for files in bootstrap.NEEDS_DATA.values() for p in files):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("present\n")
    todo = bootstrap.missing_models(lambda name: False)
    runnable, skipped = bootstrap.without_data(todo, tmp_path)
    assert (runnable, skipped) == (todo, [])
    (tmp_path / "cmapss" / "RUL_FD001.txt").unlink()
    runnable, skipped = bootstrap.without_data(todo, tmp_path)
    assert [name for name, _ in skipped] == ["rul-turbofan"]
    assert "missing cmapss/RUL_FD001.txt;" in skipped[0][1]
