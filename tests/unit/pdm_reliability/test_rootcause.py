"""5-whys records: validation and the JSON round trip."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdm_reliability.rootcause import FiveWhys, Why


def record(**overrides: object) -> FiveWhys:
    fields: dict[str, object] = {
        "problem": "Coolant pump P-7 seized on line 3 during the night shift",
        "whys": [
            Why("Why did the pump seize?", "The drive-end bearing failed"),
            Why("Why did the bearing fail?", "It ran without grease"),
            Why("Why was there no grease?", "The auto-lubricator cartridge was empty"),
            Why("Why was it empty?", "Cartridge changes are not on the PM route"),
        ],
        "root_cause": "Lubricator cartridge replacement missing from the PM task list",
        "countermeasure": "Add cartridge check to the monthly route; level sensor alarm",
        "owner": "maintenance-planning",
        "due": date(2025, 3, 31),
    }
    fields.update(overrides)
    return FiveWhys(**fields)  # type: ignore[arg-type]


def test_a_record_round_trips_through_json() -> None:
    r = record()
    assert isinstance(r.whys, tuple) and len(r.whys) == 4
    text = r.to_json()
    assert '"due": "2025-03-31"' in text
    assert FiveWhys.from_json(text) == r
    assert FiveWhys.from_dict(r.to_dict()) == r


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"whys": []}, "between 1 and 5"),
        ({"whys": [Why("Why?", "Because.")] * 6}, "between 1 and 5"),
        ({"whys": [("Why?", "Because.")]}, "Why"),
        ({"problem": " "}, "problem"),
        ({"root_cause": ""}, "root_cause"),
        ({"countermeasure": ""}, "countermeasure"),
        ({"owner": "  "}, "owner"),
        ({"due": "2025-03-31"}, "due"),
        ({"due": datetime(2025, 3, 31, 12, 0)}, "due"),
    ],
)
def test_invalid_records_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record(**overrides)


@pytest.mark.parametrize(("why", "because"), [("", "x"), ("x", ""), ("x", "\n\t")])
def test_no_empty_question_or_answer(why: str, because: str) -> None:
    with pytest.raises(ValueError):
        Why(why, because)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("owner"), "missing keys"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.update(due="31/03/2025"), "ISO date"),
        (lambda d: d.update(due=20250331), "ISO date"),
        (lambda d: d.update(whys="why?"), "list"),
        (lambda d: d.update(whys=[{"why": "a"}]), "why and because"),
        (lambda d: d.update(whys=[{"why": "a", "because": ""}]), "because"),
    ],
)
def test_from_dict_refuses_malformed_data(change, message: str) -> None:
    data = record().to_dict()
    change(data)
    with pytest.raises(ValueError, match=message):
        FiveWhys.from_dict(data)
    with pytest.raises(ValueError):
        FiveWhys.from_json("[1, 2]")


texts = st.text(min_size=1, max_size=40).filter(str.strip)


@given(
    texts,
    st.lists(st.tuples(texts, texts), min_size=1, max_size=5),
    texts,
    texts,
    texts,
    st.dates(),
)
def test_any_valid_record_round_trips(
    problem: str,
    pairs: list[tuple[str, str]],
    root: str,
    fix: str,
    owner: str,
    due: date,
) -> None:
    r = FiveWhys(problem, [Why(w, b) for w, b in pairs], root, fix, owner, due)
    assert FiveWhys.from_json(r.to_json()) == r
