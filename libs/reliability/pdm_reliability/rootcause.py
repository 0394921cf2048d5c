"""5-whys root-cause records.

Why: after a confirmed failure, the reliability engineer records the chain from the problem to
a root cause and the countermeasure that removes it, with an owner and a due date, so the
action can be tracked and the same failure mode does not come back. The record is kept small
and strict: a problem statement, one to five why/because pairs (none blank), the root cause,
the countermeasure, who owns it and by when. Five is a guideline, not a quota; stopping
earlier is allowed, going past five usually means the problem statement is too broad.

Records are plain data and round-trip through JSON (`to_dict`/`from_dict`,
`to_json`/`from_json`); the due date is an ISO date (YYYY-MM-DD).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

MAX_WHYS = 5


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty text")
    return value


@dataclass(frozen=True, slots=True)
class Why:
    """One step: the question asked and the answer found."""

    why: str
    because: str

    def __post_init__(self) -> None:
        _text("why", self.why)
        _text("because", self.because)

    def to_dict(self) -> dict[str, str]:
        return {"why": self.why, "because": self.because}


@dataclass(frozen=True, slots=True)
class FiveWhys:
    """A validated 5-whys record."""

    problem: str
    whys: Sequence[Why]
    root_cause: str
    countermeasure: str
    owner: str
    due: date

    def __post_init__(self) -> None:
        _text("problem", self.problem)
        whys = tuple(self.whys)
        if not 1 <= len(whys) <= MAX_WHYS:
            raise ValueError(f"between 1 and {MAX_WHYS} why/because pairs, got {len(whys)}")
        if not all(isinstance(w, Why) for w in whys):
            raise ValueError("whys must be Why(why=..., because=...) pairs")
        object.__setattr__(self, "whys", whys)
        _text("root_cause", self.root_cause)
        _text("countermeasure", self.countermeasure)
        _text("owner", self.owner)
        if isinstance(self.due, datetime) or not isinstance(self.due, date):
            raise ValueError(f"due must be a date, got {self.due!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "whys": [w.to_dict() for w in self.whys],
            "root_cause": self.root_cause,
            "countermeasure": self.countermeasure,
            "owner": self.owner,
            "due": self.due.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FiveWhys:
        """Build from `to_dict` output; ValueError on missing or unknown keys and bad values."""
        expected = {"problem", "whys", "root_cause", "countermeasure", "owner", "due"}
        missing, unknown = expected - data.keys(), data.keys() - expected
        if missing or unknown:
            raise ValueError(f"missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
        raw_whys = data["whys"]
        if not isinstance(raw_whys, list):
            raise ValueError("whys must be a list of {why, because} objects")
        whys = []
        for item in raw_whys:
            if not isinstance(item, Mapping) or set(item) != {"why", "because"}:
                raise ValueError(f"each why needs exactly the keys why and because: {item!r}")
            whys.append(Why(item["why"], item["because"]))
        due = data["due"]
        if not isinstance(due, str):
            raise ValueError(f"due must be an ISO date string, got {due!r}")
        try:
            due_date = date.fromisoformat(due)
        except ValueError:
            raise ValueError(f"due must be an ISO date (YYYY-MM-DD), got {due!r}") from None
        return cls(
            problem=data["problem"],
            whys=tuple(whys),
            root_cause=data["root_cause"],
            countermeasure=data["countermeasure"],
            owner=data["owner"],
            due=due_date,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> FiveWhys:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a 5-whys record is a JSON object")
        return cls.from_dict(data)
