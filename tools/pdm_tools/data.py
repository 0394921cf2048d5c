"""The public data sets the platform trains and benchmarks on: where each comes from, its
licence, and the files expected under `PDM_DATA_DIR` with their size and SHA-256.

The data are not in the repository (14 MB most users never need; each publisher is the place
to get them and their terms). This manifest makes a copy fetched by hand verifiable (`pdm data
check`): the checksums are those of the copies the results in docs/models.md and
docs/benchmarks.md were measured on, so a different file is noticed before it changes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Digest:
    """One accepted form of a file: its size in bytes and SHA-256 (hex)."""

    size: int
    sha256: str


@dataclass(frozen=True)
class DataFile:
    """A file under the data directory. `origin` says where it is in the publisher's
    distribution; `accepted` lists every byte-exact form the code reads correctly."""

    path: str
    origin: str
    accepted: tuple[Digest, ...]
    #: False: only an optional evaluation reads it, so its absence is not an error.
    required: bool = True


@dataclass(frozen=True)
class DataSet:
    """A public data set: a folder under the data directory."""

    name: str
    short: str
    title: str
    publisher: str
    url: str
    licence: str
    used_by: str
    files: tuple[DataFile, ...]


def _cmapss(subset: str, sizes: Sequence[tuple[int, str]], required: bool) -> tuple[DataFile, ...]:
    return tuple(
        DataFile(
            f"cmapss/{kind}_{subset}.txt",
            f"`{kind}_{subset}.txt` in `CMAPSSData.zip` (Turbofan Engine Degradation Simulation)",
            (Digest(size, sha256),),
            required,
        )
        for kind, (size, sha256) in zip(("train", "test", "RUL"), sizes, strict=True)
    )


MANIFEST: tuple[DataSet, ...] = (
    DataSet(
        name="ai4i2020",
        short="AI4I 2020",
        title="AI4I 2020 Predictive Maintenance Dataset (Matzka 2020)",
        publisher="UCI Machine Learning Repository, data set 601",
        url="https://archive.ics.uci.edu/dataset/601/ai4i+2020+predictive+maintenance+dataset",
        licence="CC BY 4.0 (credit UCI and S. Matzka, 2020)",
        used_by="`pdm train ai4i` (`failure-milling`), `pdm replay ai4i`, bench/prediction.py",
        files=(
            DataFile(
                "ai4i2020/ai4i2020.csv",
                "`ai4i2020.csv` in the data set's download",
                (
                    Digest(
                        508_149, "9841aaa04b716d41ce9501f42d9388de7f571566608945061d026f95853c0337"
                    ),
                ),
            ),
        ),
    ),
    DataSet(
        name="cmapss",
        short="C-MAPSS",
        title="NASA C-MAPSS Turbofan Engine Degradation Simulation (Saxena et al. 2008)",
        publisher="NASA Ames Prognostics Center of Excellence, PCoE Data Set Repository",
        url="https://www.nasa.gov/intelligent-systems-division/discovery-and-systems-health/pcoe/pcoe-data-set-repository/",
        licence="US Government work, public domain (cite Saxena et al., PHM 2008)",
        used_by="`pdm train cmapss` (`rul-turbofan`, FD001 in `make run`; FD003 is optional), "
        "`pdm replay cmapss`",
        files=(
            *_cmapss(
                "FD001",
                (
                    (3_515_356, "963b5e22825b34d8b21c69e1aeb4af3e647050eb672ee8834ba4b5d91d2de0f8"),
                    (2_228_855, "3cda7109ce17bafb5443f2ac926cfcf88154b941b8c4cf95eb55d1ddd6f52851"),
                    (429, "a19c8ec94931949d0485bdc35118206e9c81c4547b422efb9cf86f4ceddbceca"),
                ),
                required=True,
            ),
            *_cmapss(
                "FD003",
                (
                    (4_213_862, "2abbe9968cc5e8eb091980f51b20f62bb4127336d3482cb52071d53bf23329e2"),
                    (2_826_651, "299babd63c8d987cef079c4a425429f33b3a34797d803bbe2ad48c29dbd0d790"),
                    (428, "df1e0566306b174a2de41c67a3e7a51877889598b78643fc3e5685259091b7cb"),
                ),
                required=False,
            ),
        ),
    ),
    DataSet(
        name="nab",
        short="NAB",
        title="Numenta Anomaly Benchmark (NAB) v1.1: "
        "`realKnownCause/machine_temperature_system_failure`",
        publisher="Numenta, the NAB repository on GitHub",
        url="https://github.com/numenta/NAB",
        licence="MIT (the repository's LICENSE.txt since December 2024; AGPL-3.0 before)",
        used_by="bench/nab.py (NAB score of the anomaly service's univariate detector)",
        files=(
            DataFile(
                "nab/machine_temperature_system_failure.csv",
                "`data/realKnownCause/machine_temperature_system_failure.csv` in the repository",
                (
                    Digest(
                        732_223, "92bf5b87fc7f9bba8ca0b7ec63ccaac8cb4a1371a258e8c29a10ae9c018d82a4"
                    ),
                ),
            ),
            DataFile(
                "nab/combined_windows.json",
                "`labels/combined_windows.json` in the repository (the whole file, or only "
                "this series' entry)",
                (
                    # NAB's whole file at ea702d7 (2024-12-03; unchanged since 2015)
                    Digest(
                        15_359, "1e1fbc4601321aad8d0f8b3784c8134299379f68f6c1f7777565f8ffd57ab6b1"
                    ),
                    # this series' entry only (json.dump(indent=4))
                    Digest(488, "18704e0e9a0c7b7b683e76209f4d52777c5efd4f706d14c163c2d4ac8f8ad03a"),
                ),
            ),
        ),
    ),
)

Status = Literal["ok", "missing", "mismatch"]


@dataclass(frozen=True)
class FileCheck:
    """What `pdm data check` found for one file, and where to get it when it is not ok."""

    dataset: DataSet
    file: DataFile
    path: Path
    status: Status
    detail: str = ""

    @property
    def problem(self) -> bool:
        """A wrong file is always a problem (the code would read it); a missing one only
        when something reads it by default."""
        return self.status == "mismatch" or (self.status == "missing" and self.file.required)

    def advice(self) -> str:
        return f"get {self.file.origin} from {self.dataset.url} and put it at {self.path}"

    def as_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset.name,
            "file": self.file.path,
            "path": str(self.path),
            "status": self.status,
            "required": self.file.required,
            "problem": self.problem,
            "detail": self.detail,
            "source": self.dataset.url,
            "origin": self.file.origin,
        }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(dataset: DataSet, file: DataFile, root: Path) -> FileCheck:
    """Size first (a wrong size needs no hashing), then SHA-256 against every accepted form."""
    path = root / file.path
    if not path.is_file():
        return FileCheck(dataset, file, path, "missing", "not found")
    size = path.stat().st_size
    if size not in {d.size for d in file.accepted}:
        expected = " or ".join(f"{d.size:,}" for d in file.accepted)
        return FileCheck(dataset, file, path, "mismatch", f"{size:,} bytes, expected {expected}")
    found = sha256_of(path)
    if found not in {d.sha256 for d in file.accepted if d.size == size}:
        return FileCheck(
            dataset, file, path, "mismatch", f"sha256 {found} is not the published file's"
        )
    return FileCheck(dataset, file, path, "ok")


def check(
    root: Path, manifest: Iterable[DataSet] | None = None, names: Sequence[str] = ()
) -> list[FileCheck]:
    """Every file of the data sets `names` (all when empty), in manifest order."""
    chosen = [
        d for d in (MANIFEST if manifest is None else manifest) if not names or d.name in names
    ]
    unknown = sorted(set(names) - {d.name for d in chosen})
    if unknown:
        raise ValueError(f"unknown data set(s): {', '.join(unknown)}")
    return [check_file(d, f, root) for d in chosen for f in d.files]


def absent(paths: Iterable[str], root: Path) -> list[Path]:
    """Which of these data-directory paths do not exist (cheap: for `make run`'s plan, which
    must not spend seconds hashing before the platform answers)."""
    return [root / p for p in paths if not (root / p).is_file()]


def dataset_of(path: str, manifest: Iterable[DataSet] = MANIFEST) -> DataSet:
    """The data set a data-directory path belongs to."""
    for dataset in manifest:
        if any(f.path == path for f in dataset.files):
            return dataset
    raise KeyError(path)


def sources_markdown(manifest: Iterable[DataSet] = MANIFEST) -> str:
    """The README's data-set table (`pdm data sources`)."""
    lines = [
        "| folder | data set | official source | licence | used by |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{d.name}/` | {d.title} | {d.publisher}: <{d.url}> | {d.licence} | {d.used_by} |"
        for d in manifest
    ]
    return "\n".join(lines)
