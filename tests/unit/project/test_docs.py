"""Documentation cannot drift from code: every setting is in the README's table."""

from __future__ import annotations

from pathlib import Path

from pdm_common import topics
from pdm_tools.config_doc import rows

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def test_every_environment_variable_is_documented_in_the_readme():
    missing = [var for var, _, _ in rows() if f"`{var}`" not in README]
    assert missing == [], f"add to README (run `pdm config`): {missing}"


def test_every_setting_has_a_description():
    assert [var for var, _, desc in rows() if not desc] == []


def test_the_readme_names_every_primary_topic_that_exists_today():
    for topic in (topics.READINGS, topics.READINGS_VALIDATED, topics.ANOMALIES, topics.PREDICTIONS):
        assert f"`{topic}`" in README


def test_topic_names_follow_the_convention():
    import re

    pattern = re.compile(r"^pdm\.[a-z]+(\.[a-z]+)*\.v\d+(\.retry|\.dlq)?$")
    assert [t for t in topics.all_topics() if not pattern.match(t)] == []


def test_committed_asyncapi_document_is_current():
    from pdm_common.asyncapi import render

    committed = (Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json").read_text()
    assert committed == render(), "regenerate: .venv/bin/pdm asyncapi > docs/asyncapi.json"


def test_asyncapi_carries_the_reading_schema():
    from pdm_common.asyncapi import build

    doc = build()
    snapshot = doc["components"]["schemas"]["ReadingSnapshot"]
    assert set(snapshot["required"]) == {"asset_id", "ts", "readings"}
    assert snapshot["additionalProperties"] is False
    assert "pdm.readings.v1.dlq" in doc["channels"]
