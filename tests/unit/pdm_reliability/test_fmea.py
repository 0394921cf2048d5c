"""PFMEA rows: validation, RPN, the AIAG & VDA (2019) action priority, the sorted worksheet."""

from __future__ import annotations

import json
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdm_reliability.fmea import (
    AP_ORDER,
    FmeaRow,
    action_priority,
    rpn,
    worksheet,
    worksheet_to_json,
)

# Cells checked against the handbook's "Action Priority (AP) for DFMEA and PFMEA" table
# (S band / O band / D band -> AP), chosen at the places where the table turns.
HANDBOOK_CELLS = [
    (10, 10, 10, "H"),  # 9-10 / 8-10 / 7-10
    (9, 6, 1, "H"),  # 9-10 / 6-7 / 1: high severity, moderate occurrence
    (9, 5, 1, "M"),  # 9-10 / 4-5 / 1: only the best detection lowers it
    (9, 4, 2, "H"),  # 9-10 / 4-5 / 2-4
    (10, 2, 10, "H"),  # 9-10 / 2-3 / 7-10
    (10, 3, 6, "M"),  # 9-10 / 2-3 / 5-6
    (10, 2, 2, "L"),  # 9-10 / 2-3 / 2-4: rare and detected
    (10, 1, 10, "L"),  # 9-10 / 1 / 7-10: rare, even if undetectable
    (8, 8, 1, "H"),  # 7-8 / 8-10 / 1
    (8, 7, 1, "M"),  # 7-8 / 6-7 / 1
    (7, 5, 7, "H"),  # 7-8 / 4-5 / 7-10
    (7, 5, 1, "M"),  # 7-8 / 4-5 / 1
    (7, 3, 6, "M"),  # 7-8 / 2-3 / 5-6
    (7, 3, 4, "L"),  # 7-8 / 2-3 / 2-4
    (5, 8, 10, "H"),  # 4-6 / 8-10 / 7-10
    (5, 10, 1, "M"),  # 4-6 / 8-10 / 1
    (6, 6, 4, "M"),  # 4-6 / 6-7 / 2-4
    (6, 6, 1, "L"),  # 4-6 / 6-7 / 1
    (6, 4, 7, "M"),  # 4-6 / 4-5 / 7-10
    (5, 5, 6, "L"),  # 4-6 / 4-5 / 5-6
    (5, 3, 10, "L"),  # 4-6 / 2-3 / 7-10
    (3, 10, 10, "M"),  # 2-3 / 8-10 / 7-10
    (2, 9, 5, "M"),  # 2-3 / 8-10 / 5-6
    (3, 8, 4, "L"),  # 2-3 / 8-10 / 2-4
    (3, 6, 10, "L"),  # 2-3 / 6-7 / 7-10
    (1, 10, 10, "L"),  # 1: no discernible effect
]


@pytest.mark.parametrize(("s", "o", "d", "ap"), HANDBOOK_CELLS)
def test_action_priority_matches_the_handbook_table(s: int, o: int, d: int, ap: str) -> None:
    assert action_priority(s, o, d) == ap


def test_every_rating_inside_a_band_gets_the_same_priority() -> None:
    bands_s = [(9, 10), (7, 8), (4, 5, 6), (2, 3), (1,)]
    bands_o = [(8, 9, 10), (6, 7), (4, 5), (2, 3), (1,)]
    bands_d = [(7, 8, 9, 10), (5, 6), (2, 3, 4), (1,)]
    for bs, bo, bd in product(bands_s, bands_o, bands_d):
        assert len({action_priority(s, o, d) for s, o, d in product(bs, bo, bd)}) == 1


def test_priority_never_drops_as_a_rating_worsens() -> None:
    rank = {"L": 0, "M": 1, "H": 2}
    for s, o, d in product(range(1, 11), repeat=3):
        ap = rank[action_priority(s, o, d)]
        if s < 10:
            assert rank[action_priority(s + 1, o, d)] >= ap
        if o < 10:
            assert rank[action_priority(s, o + 1, d)] >= ap
        if d < 10:
            assert rank[action_priority(s, o, d + 1)] >= ap
    assert {action_priority(1, o, d) for o, d in product(range(1, 11), repeat=2)} == {"L"}


ratings = st.integers(1, 10)


@given(ratings, ratings, ratings)
def test_rpn_is_the_product_and_within_range(s: int, o: int, d: int) -> None:
    value = rpn(s, o, d)
    assert value == s * o * d
    assert 1 <= value <= 1000


@pytest.mark.parametrize("bad", [0, 11, -3, 5.0, True, "7", None])
def test_ratings_must_be_integers_1_to_10(bad: object) -> None:
    with pytest.raises(ValueError, match=r"1\.\.10"):
        action_priority(bad, 5, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1\.\.10"):
        row(detection=bad)  # type: ignore[arg-type]


def row(**overrides: object) -> FmeaRow:
    fields: dict[str, object] = {
        "function": "Pump coolant at 40 l/min",
        "failure_mode": "No flow",
        "effect": "Spindle overheats, machine stops",
        "cause": "Bearing seizure from lubricant loss",
        "current_controls": "Monthly grease; vibration alarm",
        "severity": 7,
        "occurrence": 4,
        "detection": 5,
    }
    fields.update(overrides)
    return FmeaRow(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["function", "failure_mode", "effect", "cause"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_descriptive_fields_must_not_be_blank(name: str, blank: str) -> None:
    with pytest.raises(ValueError, match=name):
        row(**{name: blank})


def test_a_row_computes_rpn_and_priority_and_round_trips() -> None:
    r = row(current_controls="")  # no current controls is allowed
    assert (r.rpn, r.action_priority) == (140, "M")
    data = json.loads(json.dumps(r.to_dict()))
    assert data["rpn"] == 140 and data["action_priority"] == "M"
    assert FmeaRow.from_dict(data) == r


def test_worksheet_is_sorted_by_priority_then_rpn() -> None:
    a = row(failure_mode="a", severity=9, occurrence=2, detection=2)  # L, RPN 36
    b = row(failure_mode="b", severity=5, occurrence=8, detection=8)  # H, RPN 320
    c = row(failure_mode="c", severity=10, occurrence=2, detection=8)  # H, RPN 160
    d = row(failure_mode="d", severity=3, occurrence=9, detection=9)  # M, RPN 243
    e = row(failure_mode="e", severity=2, occurrence=9, detection=1)  # L, RPN 18
    f = row(failure_mode="f", severity=6, occurrence=5, detection=8)  # M, RPN 240
    sheet = worksheet([a, b, c, d, e, f])
    assert [r.failure_mode for r in sheet] == ["b", "c", "d", "f", "a", "e"]
    assert [AP_ORDER[r.action_priority] for r in sheet] == [0, 0, 1, 1, 2, 2]
    assert [r["failure_mode"] for r in json.loads(worksheet_to_json([a, b, c]))] == ["b", "c", "a"]
