"""PFMEA worksheet rows, RPN and the AIAG & VDA action priority (AP).

Why: maintenance strategy reviews record, per function and failure mode, how bad the effect is
(severity S), how likely the cause is given current prevention (occurrence O) and how likely
current controls are to catch it first (detection D), each rated 1..10. The legacy risk
priority number `RPN = S * O * D` (1..1000) treats the three as interchangeable, so a
catastrophic-but-rare row can rank below a nuisance; the AIAG & VDA FMEA Handbook (1st edition,
2019) replaced it with the action priority, a lookup that weighs S first, then O, then D:
H (action required: improve prevention and/or detection, or justify), M (action should be
taken), L (action could be taken). RPN is kept as a tie-breaker and for old worksheets.

The AP table below is the handbook's "Action Priority (AP) for DFMEA and PFMEA" (the same table
serves both; FMEA-MSR has a different one, not implemented). Bands: S 9-10, 7-8, 4-6, 2-3, 1;
O 8-10, 6-7, 4-5, 2-3, 1; D 7-10, 5-6, 2-4, 1. Note that high severity alone does not force H:
S 9-10 with O 1 is L whatever D is, and S 9-10 / O 2-3 is L once D is 2-4 or better.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ActionPriority = Literal["H", "M", "L"]
AP_ORDER: dict[ActionPriority, int] = {"H": 0, "M": 1, "L": 2}

# Rows: occurrence band 8-10, 6-7, 4-5, 2-3, 1. Letters: detection band 7-10, 5-6, 2-4, 1.
_AP_TABLE: dict[str, tuple[str, str, str, str, str]] = {
    "9-10": ("HHHH", "HHHH", "HHHM", "HMLL", "LLLL"),
    "7-8": ("HHHH", "HHHM", "HMMM", "MMLL", "LLLL"),
    "4-6": ("HHMM", "MMML", "MLLL", "LLLL", "LLLL"),
    "2-3": ("MMLL", "LLLL", "LLLL", "LLLL", "LLLL"),
    "1": ("LLLL", "LLLL", "LLLL", "LLLL", "LLLL"),
}


def _check_rating(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise ValueError(f"{name} must be an integer rating 1..10, got {value!r}")
    return value


def _severity_band(s: int) -> str:
    return "9-10" if s >= 9 else "7-8" if s >= 7 else "4-6" if s >= 4 else "2-3" if s >= 2 else "1"


def action_priority(severity: int, occurrence: int, detection: int) -> ActionPriority:
    """AIAG & VDA (2019) action priority H/M/L of one S/O/D rating triple."""
    s = _check_rating("severity", severity)
    o = _check_rating("occurrence", occurrence)
    d = _check_rating("detection", detection)
    row = 0 if o >= 8 else 1 if o >= 6 else 2 if o >= 4 else 3 if o >= 2 else 4
    col = 0 if d >= 7 else 1 if d >= 5 else 2 if d >= 2 else 3
    letter = _AP_TABLE[_severity_band(s)][row][col]
    return "H" if letter == "H" else "M" if letter == "M" else "L"


def rpn(severity: int, occurrence: int, detection: int) -> int:
    """Risk priority number `S * O * D`, 1..1000."""
    return (
        _check_rating("severity", severity)
        * _check_rating("occurrence", occurrence)
        * _check_rating("detection", detection)
    )


_TEXT_FIELDS = ("function", "failure_mode", "effect", "cause")


@dataclass(frozen=True, slots=True)
class FmeaRow:
    """One PFMEA worksheet row, validated on construction: the descriptive fields must not be
    blank (`current_controls` may be empty, meaning none), the ratings are integers 1..10."""

    function: str
    failure_mode: str
    effect: str
    cause: str
    current_controls: str
    severity: int
    occurrence: int
    detection: int

    def __post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty text")
        if not isinstance(self.current_controls, str):
            raise ValueError("current_controls must be a text (empty for none)")
        _check_rating("severity", self.severity)
        _check_rating("occurrence", self.occurrence)
        _check_rating("detection", self.detection)

    @property
    def rpn(self) -> int:
        return self.severity * self.occurrence * self.detection

    @property
    def action_priority(self) -> ActionPriority:
        return action_priority(self.severity, self.occurrence, self.detection)

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "failure_mode": self.failure_mode,
            "effect": self.effect,
            "cause": self.cause,
            "current_controls": self.current_controls,
            "severity": self.severity,
            "occurrence": self.occurrence,
            "detection": self.detection,
            "rpn": self.rpn,
            "action_priority": self.action_priority,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FmeaRow:
        """Inverse of `to_dict`; the derived `rpn` and `action_priority` are recomputed."""
        return cls(
            function=data["function"],
            failure_mode=data["failure_mode"],
            effect=data["effect"],
            cause=data["cause"],
            current_controls=data.get("current_controls", ""),
            severity=data["severity"],
            occurrence=data["occurrence"],
            detection=data["detection"],
        )


def worksheet(rows: Iterable[FmeaRow]) -> list[FmeaRow]:
    """Rows in the order to work on them: AP (H, M, L), then RPN descending, then severity
    descending; the input order breaks remaining ties."""
    return sorted(rows, key=lambda r: (AP_ORDER[r.action_priority], -r.rpn, -r.severity))


def worksheet_to_json(rows: Iterable[FmeaRow]) -> str:
    """The sorted worksheet as a JSON array of row dicts."""
    return json.dumps([r.to_dict() for r in worksheet(rows)])
