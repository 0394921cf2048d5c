"""Every place that must know a service learns it from `pdm_tools.catalog`; these tests fail
when a service folder exists that the catalog (or a place that cannot read it) lacks."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from pdm_common.settings import ServiceSettings
from pdm_tools import catalog, config_doc

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_service_folder_is_in_the_catalog_and_back() -> None:
    folders = {p.parents[1].name for p in ROOT.glob("services/*/pdm_*/__main__.py")}
    assert folders == {s.name for s in catalog.SERVICES}, "add the service to pdm_tools.catalog"


@pytest.mark.parametrize("service", catalog.SERVICES, ids=lambda s: s.name)
def test_a_service_has_its_package_entry_point_settings_and_name(
    service: catalog.Service,
) -> None:
    assert (service.folder / service.package / "__main__.py").is_file()
    settings = service.settings_class()
    assert issubclass(settings, ServiceSettings)
    assert settings.model_config.get("env_prefix") == f"PDM_{service.name.upper()}_"
    assert service.default_port() > 0
    assert service.name == importlib.import_module(service.package).SERVICE


def test_the_wheel_and_the_import_contracts_know_every_package() -> None:
    packages = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    roots = set(PYPROJECT["tool"]["importlinter"]["root_packages"])
    layers = " | ".join(PYPROJECT["tool"]["importlinter"]["contracts"][0]["layers"])
    for service in catalog.SERVICES:
        assert f"services/{service.name}/{service.package}" in packages
        assert service.package in roots
        assert service.package in layers
    for lib in ROOT.glob("libs/*/pdm_*"):
        assert lib.relative_to(ROOT).as_posix() in packages
        assert lib.name in roots


def test_config_documents_every_service_settings_class() -> None:
    for service in catalog.SERVICES:
        assert service.settings_path in config_doc.SETTINGS_CLASSES


def test_owned_tables_are_created_by_a_migration_and_owned_once() -> None:
    sql = "\n".join(p.read_text() for p in ROOT.glob("libs/common/pdm_common/db/**/*.sql"))
    owned = [t for s in catalog.SERVICES for t in s.tables]
    assert len(owned) == len(set(owned)), "a table has one owner"
    assert [t for t in owned if f"CREATE TABLE {t} " not in sql] == []
    statements = catalog.reset_statements()
    assert statements[0].startswith("TRUNCATE ")
    assert "prediction_timer" not in statements[0], "seeded tables are reset, not emptied"


def test_the_readme_shows_the_current_services_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert catalog.markdown() in readme, "update the README: .venv/bin/pdm services"
