"""`pdm data check|sources`: are the public data sets under `PDM_DATA_DIR` the published
files, and where does a missing one come from (`pdm_tools.data` holds the manifest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pdm_tools import data

data_app = typer.Typer(
    no_args_is_help=True,
    help="The public data sets (AI4I 2020, C-MAPSS, NAB): checksums, sources, licences.",
)


@data_app.command("check")
def check(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Data sets to check (ai4i2020, cmapss, nab); all by default."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="The data directory (default: PDM_DATA_DIR's value).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Verify every expected file by size and SHA-256; for a missing or wrong one, say where
    to get it and where to put it. Exit 1 when a file the platform reads is missing or wrong."""
    from pdm_tools.paths import data_dir as default_data_dir

    root = data_dir or default_data_dir()
    try:
        results = data.check(root, names=names or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    problems = [r for r in results if r.problem]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "data_dir": str(root),
                    "ok": not problems,
                    "files": [r.as_dict() for r in results],
                },
                indent=2,
            )
        )
    else:
        _print(root, results)
    if problems:
        raise typer.Exit(1)


def _print(root: Path, results: list[data.FileCheck]) -> None:
    typer.echo(f"data directory: {root} (PDM_DATA_DIR)")
    for name in dict.fromkeys(r.dataset.name for r in results):
        mine = [r for r in results if r.dataset.name == name]
        dataset = mine[0].dataset
        typer.secho(f"{name}: {dataset.title}; {dataset.licence}", bold=True)
        for r in mine:
            if r.status == "ok":
                typer.echo(f"  ok        {r.file.path}")
                continue
            optional = "" if r.file.required else " (optional)"
            typer.secho(
                f"  {r.status:<9} {r.file.path}{optional}: {r.detail}",
                fg="red" if r.problem else "yellow",
            )
            typer.echo(f"            get {r.file.origin}, put it at {r.path}")
        if any(r.status != "ok" for r in mine):
            typer.echo(f"  source    {dataset.publisher}: {dataset.url}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "missing", "mismatch")}
    problems = sum(r.problem for r in results)
    typer.echo(
        f"{len(results)} files: {counts['ok']} ok, {counts['missing']} missing, "
        f"{counts['mismatch']} wrong"
        + (f"; {problems} of them needed by the platform" if problems else "")
    )


@data_app.command("sources")
def sources() -> None:
    """Print each data set's official source, licence and users (Markdown, as in the README)."""
    typer.echo(data.sources_markdown())
