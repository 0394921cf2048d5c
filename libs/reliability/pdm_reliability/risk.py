"""Asset risk (probability x consequence), a 5x5 risk matrix, and Pareto analysis.

Why: the scheduler and the people reading its plan need one ordering of "what to look at
first". Risk as an expected loss, `probability * consequence`, ranks assets on a money scale
the maintenance budget understands; the 5x5 matrix turns the same two inputs into the coarse
level (low / medium / high / extreme) that operating procedures are written against, and
keeps a rare-but-catastrophic failure visible even when its expected loss is small.

Inputs per asset: `probability` of failure within the planning horizon (for an asset in
service, `Weibull.conditional_failure_probability(age, horizon)`, or the prediction model's
probability) and `consequence`, the cost if it fails (repair, downtime, secondary damage; in
the platform currency).

Default bands (`RiskMatrix()`), each band's upper edge inclusive:

| band | probability within horizon | label          | consequence (cost)   | label      |
|------|----------------------------|----------------|----------------------|------------|
| 1    | <= 1 %                     | rare           | <= 1 000             | negligible |
| 2    | <= 5 %                     | unlikely       | <= 10 000            | minor      |
| 3    | <= 20 %                    | possible       | <= 100 000           | moderate   |
| 4    | <= 50 %                    | likely         | <= 1 000 000         | major      |
| 5    | > 50 %                     | almost certain | > 1 000 000          | severe     |

Default levels, by the band product `score = P * C` (1..25): 1-4 low, 5-9 medium, 10-16 high,
20-25 extreme, i.e. (rows probability band 1..5, columns consequence band 1..5)

    P5  M H H E E
    P4  L M H H E
    P3  L M M H H
    P2  L L M M H
    P1  L L L L M

Bands and levels are configurable; a level grid must not decrease along either axis.

Pareto: sort failure modes by count or cost, the cumulative share, and the "vital few", the
smallest set of top modes that reaches 80 % (configurable) of the total; the crossing mode is
included.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

RiskLevel = Literal["low", "medium", "high", "extreme"]
LEVELS: tuple[RiskLevel, ...] = ("low", "medium", "high", "extreme")


def _level_from_score(score: int) -> RiskLevel:
    if score <= 4:
        return "low"
    if score <= 9:
        return "medium"
    if score <= 16:
        return "high"
    return "extreme"


#: levels[probability_band - 1][consequence_band - 1]
DEFAULT_LEVELS: tuple[tuple[RiskLevel, ...], ...] = tuple(
    tuple(_level_from_score(p * c) for c in range(1, 6)) for p in range(1, 6)
)
DEFAULT_PROBABILITY_EDGES = (0.01, 0.05, 0.20, 0.50)
DEFAULT_CONSEQUENCE_EDGES = (1_000.0, 10_000.0, 100_000.0, 1_000_000.0)
PROBABILITY_LABELS = ("rare", "unlikely", "possible", "likely", "almost certain")
CONSEQUENCE_LABELS = ("negligible", "minor", "moderate", "major", "severe")


def _check_edges(name: str, edges: Sequence[float]) -> tuple[float, ...]:
    edges = tuple(float(e) for e in edges)
    if len(edges) != 4:
        raise ValueError(f"{name}: 4 upper edges (of bands 1-4) are needed, got {len(edges)}")
    if not all(math.isfinite(e) for e in edges) or any(
        b <= a for a, b in itertools.pairwise(edges)
    ):
        raise ValueError(f"{name} must be finite and strictly increasing: {edges}")
    return edges


@dataclass(frozen=True, slots=True)
class RiskMatrix:
    """A 5x5 risk matrix: band edges for probability and consequence, and the level grid
    `levels[probability_band - 1][consequence_band - 1]`."""

    probability_edges: tuple[float, ...] = DEFAULT_PROBABILITY_EDGES
    consequence_edges: tuple[float, ...] = DEFAULT_CONSEQUENCE_EDGES
    levels: tuple[tuple[RiskLevel, ...], ...] = DEFAULT_LEVELS
    probability_labels: tuple[str, ...] = PROBABILITY_LABELS
    consequence_labels: tuple[str, ...] = CONSEQUENCE_LABELS

    def __post_init__(self) -> None:
        p_edges = _check_edges("probability_edges", self.probability_edges)
        if not (p_edges[0] > 0 and p_edges[-1] < 1):
            raise ValueError(f"probability_edges must lie in (0, 1): {p_edges}")
        c_edges = _check_edges("consequence_edges", self.consequence_edges)
        if c_edges[0] < 0:
            raise ValueError(f"consequence_edges must not be negative: {c_edges}")
        levels = tuple(tuple(row) for row in self.levels)
        if len(levels) != 5 or any(len(row) != 5 for row in levels):
            raise ValueError("levels must be a 5x5 grid")
        if any(level not in LEVELS for row in levels for level in row):
            raise ValueError(f"levels must be among {LEVELS}")
        rank = [[LEVELS.index(level) for level in row] for row in levels]
        for p in range(5):
            for c in range(5):
                if (p and rank[p][c] < rank[p - 1][c]) or (c and rank[p][c] < rank[p][c - 1]):
                    raise ValueError(
                        "levels must not decrease with probability or consequence"
                        f" (at probability band {p + 1}, consequence band {c + 1})"
                    )
        if len(self.probability_labels) != 5 or len(self.consequence_labels) != 5:
            raise ValueError("5 labels are needed per axis")
        object.__setattr__(self, "probability_edges", p_edges)
        object.__setattr__(self, "consequence_edges", c_edges)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "probability_labels", tuple(self.probability_labels))
        object.__setattr__(self, "consequence_labels", tuple(self.consequence_labels))

    def probability_band(self, probability: float) -> int:
        """1..5; an edge value belongs to the lower band."""
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {probability!r}")
        return 1 + bisect.bisect_left(self.probability_edges, probability)

    def consequence_band(self, consequence: float) -> int:
        """1..5; an edge value belongs to the lower band."""
        if not (math.isfinite(consequence) and consequence >= 0):
            raise ValueError(f"consequence must be finite and >= 0, got {consequence!r}")
        return 1 + bisect.bisect_left(self.consequence_edges, consequence)

    def level(self, probability_band: int, consequence_band: int) -> RiskLevel:
        if not (1 <= probability_band <= 5 and 1 <= consequence_band <= 5):
            raise ValueError("bands are 1..5")
        return self.levels[probability_band - 1][consequence_band - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "probability_edges": list(self.probability_edges),
            "consequence_edges": list(self.consequence_edges),
            "levels": [list(row) for row in self.levels],
            "probability_labels": list(self.probability_labels),
            "consequence_labels": list(self.consequence_labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskMatrix:
        defaults = cls()
        return cls(
            probability_edges=tuple(data.get("probability_edges", defaults.probability_edges)),
            consequence_edges=tuple(data.get("consequence_edges", defaults.consequence_edges)),
            levels=cast(
                tuple[tuple[RiskLevel, ...], ...],
                tuple(tuple(row) for row in data.get("levels", defaults.levels)),
            ),
            probability_labels=tuple(data.get("probability_labels", defaults.probability_labels)),
            consequence_labels=tuple(data.get("consequence_labels", defaults.consequence_labels)),
        )


DEFAULT_MATRIX = RiskMatrix()


@dataclass(frozen=True, slots=True)
class AssetRisk:
    """One asset placed on the matrix. `risk = probability * consequence` (expected loss over
    the horizon, in the consequence's currency)."""

    asset_id: str
    probability: float
    consequence: float
    risk: float
    probability_band: int
    consequence_band: int
    level: RiskLevel

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "probability": self.probability,
            "consequence": self.consequence,
            "risk": self.risk,
            "probability_band": self.probability_band,
            "consequence_band": self.consequence_band,
            "level": self.level,
        }


def assess_risk(
    asset_id: str, probability: float, consequence: float, matrix: RiskMatrix = DEFAULT_MATRIX
) -> AssetRisk:
    """Risk value, bands and level of one asset."""
    p_band = matrix.probability_band(probability)
    c_band = matrix.consequence_band(consequence)
    return AssetRisk(
        asset_id=asset_id,
        probability=float(probability),
        consequence=float(consequence),
        risk=float(probability) * float(consequence),
        probability_band=p_band,
        consequence_band=c_band,
        level=matrix.level(p_band, c_band),
    )


def rank_assets(
    assets: Iterable[tuple[str, float, float]], matrix: RiskMatrix = DEFAULT_MATRIX
) -> list[AssetRisk]:
    """Assess `(asset_id, probability, consequence)` triples and order them most risky first:
    by risk (expected loss) descending, then level, then consequence (the worse outcome
    first), then asset id for a stable order. Raises ValueError on a repeated asset id."""
    assessed = [assess_risk(a, p, c, matrix) for a, p, c in assets]
    seen: set[str] = set()
    for r in assessed:
        if r.asset_id in seen:
            raise ValueError(f"asset {r.asset_id} is listed twice")
        seen.add(r.asset_id)
    return sorted(
        assessed,
        key=lambda r: (-r.risk, -LEVELS.index(r.level), -r.consequence, r.asset_id),
    )


# --- Pareto ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParetoItem:
    key: str
    value: float
    share: float
    cumulative_share: float
    vital_few: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "share": self.share,
            "cumulative_share": self.cumulative_share,
            "vital_few": self.vital_few,
        }


@dataclass(frozen=True, slots=True)
class Pareto:
    """Items sorted by value (descending, ties by key), with their share of `total`."""

    items: tuple[ParetoItem, ...]
    total: float
    threshold: float = 0.8
    vital_few: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vital_few", tuple(i.key for i in self.items if i.vital_few))

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() for i in self.items],
            "total": self.total,
            "threshold": self.threshold,
            "vital_few": list(self.vital_few),
        }


def pareto(
    values: Mapping[str, float] | Iterable[tuple[str, float]], threshold: float = 0.8
) -> Pareto:
    """Pareto analysis of `key -> value` (counts or costs). Pairs with a repeated key are
    summed, so per-event `(failure_mode, cost)` pairs can be passed as they are. The vital few
    are the top items up to and including the one whose cumulative share reaches
    `threshold`."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    pairs = values.items() if isinstance(values, Mapping) else values
    totals: dict[str, float] = {}
    for key, value in pairs:
        value = float(value)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{key}: values must be finite and >= 0, got {value!r}")
        totals[key] = totals.get(key, 0.0) + value
    total = math.fsum(totals.values())
    if total <= 0:
        raise ValueError("nothing to analyse: no items, or all values are zero")
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    items: list[ParetoItem] = []
    running = 0.0
    reached = False
    for key, value in ordered:
        running += value
        cumulative = min(running / total, 1.0)
        vital = not reached and value > 0
        reached = reached or cumulative >= threshold - 1e-12
        items.append(ParetoItem(key, value, value / total, cumulative, vital))
    return Pareto(tuple(items), total, threshold)


def pareto_counts(keys: Iterable[str], threshold: float = 0.8) -> Pareto:
    """Pareto of occurrence counts, e.g. of the failure mode of each confirmed failure."""
    return pareto(Counter(keys), threshold)
