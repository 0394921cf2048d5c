"""Promotion: the alias moves only to a candidate at least as good as the champion on the
same evaluation, and every decision is written on the candidate as `promotion.*` tags."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pdm_common.events import ModelAliasMoved
from pdm_common.registry.client import _client, _translated
from pdm_common.registry.errors import NoChampion
from pdm_common.registry.naming import CHAMPION, PROMOTION_TAG_PREFIX
from pdm_common.registry.versions import RegisteredVersion, _get_version


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """Whether the alias moved to a candidate, and the evidence (also stored as tags)."""

    name: str
    candidate_version: str
    previous_version: str | None  # the champion before the decision
    moved: bool
    reason: str
    metric: str
    higher_is_better: bool
    candidate_score: float
    champion_score: float | None
    alias: str = CHAMPION
    tags: Mapping[str, str] = field(default_factory=dict)  # the candidate version's tags

    @property
    def champion_version(self) -> str | None:
        """The version the alias points at after the decision."""
        return self.candidate_version if self.moved else self.previous_version

    def to_event(self, source: str) -> ModelAliasMoved:
        """The `pdm.models.v1` event announcing the decision (publish it when `moved`)."""
        version = self.champion_version
        if version is None:
            raise ValueError(f"{self.name}: no version holds {self.alias}; nothing to announce")
        metrics = {f"candidate_{self.metric}": self.candidate_score}
        if self.champion_score is not None:
            metrics[f"champion_{self.metric}"] = self.champion_score
        return ModelAliasMoved(
            source=source,
            model_name=self.name,
            alias=self.alias,
            version=version,
            previous_version=self.previous_version if self.moved else None,
            task=self.tags.get("task"),
            asset_type=self.tags.get("asset_type"),
            metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
            decision=self.reason,
        )


def _is_better_or_equal(candidate: float, champion: float, higher_is_better: bool) -> bool:
    if math.isnan(candidate):
        return False
    return candidate >= champion if higher_is_better else candidate <= champion


def decide(
    candidate: float, champion: float | None, *, metric: str, higher_is_better: bool
) -> tuple[bool, str]:
    """The promotion rule alone: move when at least as good, or when nothing to beat."""
    if champion is None or math.isnan(champion):
        if math.isnan(candidate):
            return False, f"candidate has no valid {metric}"
        return True, f"no comparable champion {metric}; candidate {metric}={candidate:.4g}"
    better = _is_better_or_equal(candidate, champion, higher_is_better)
    relation = "at least as good as" if better else "worse than"
    arrow = "higher" if higher_is_better else "lower"
    return better, (
        f"candidate {metric}={candidate:.4g} is {relation} champion {champion:.4g} "
        f"({arrow} is better)"
    )


def promote_if_better(
    name: str,
    version: str,
    *,
    metric: str,
    higher_is_better: bool,
    evaluate_champion: Callable[[RegisteredVersion], float] | None = None,
    candidate_score: float | None = None,
    alias: str = CHAMPION,
    tracking_uri: str,
) -> PromotionDecision:
    """Move `alias` to `version` if it is at least as good as the current holder.

    The candidate's score is `candidate_score` or its run's `metric`. The champion's score is
    `evaluate_champion(champion)` when given (the fair comparison: the same held-out data the
    candidate was scored on) or else the champion run's logged `metric`. No champion, or a
    champion without that metric, means promotion (a renamed metric must not freeze the
    alias forever). The decision and both scores are written on the candidate version as
    `promotion.*` tags. Two trainers promoting at the same moment can race (the registry has
    no compare-and-set); the last writer wins and both decisions stay recorded.
    """
    client = _client(tracking_uri)
    with _translated(tracking_uri):
        candidate = _get_version(client, name, version=version, alias=None)
        score = candidate_score if candidate_score is not None else candidate.metrics.get(metric)
        if score is None:
            raise ValueError(f"{candidate.uri}: its run has no metric {metric!r} to compare")
        try:
            champion: RegisteredVersion | None = _get_version(
                client, name, version=None, alias=alias
            )
        except NoChampion:
            champion = None
        champion_score: float | None = None
        if champion is not None and champion.version == candidate.version:
            moved, reason = False, f"version {version} already holds {alias}"
            champion_score = score
        else:
            if champion is not None:
                champion_score = (
                    float(evaluate_champion(champion))
                    if evaluate_champion is not None
                    else champion.metrics.get(metric)
                )
            moved, reason = decide(
                float(score), champion_score, metric=metric, higher_is_better=higher_is_better
            )
            if moved:
                client.set_registered_model_alias(name, alias, version)
        decision = PromotionDecision(
            name=name,
            candidate_version=version,
            previous_version=champion.version if champion else None,
            moved=moved,
            reason=reason,
            metric=metric,
            higher_is_better=higher_is_better,
            candidate_score=float(score),
            champion_score=champion_score,
            alias=alias,
            tags=candidate.tags,
        )
        for key, value in promotion_tags(decision).items():
            client.set_model_version_tag(name, version, key, value)
    return decision


def promotion_tags(decision: PromotionDecision) -> dict[str, str]:
    """The evidence of a decision, as version tags (`promotion.*`)."""
    p = PROMOTION_TAG_PREFIX
    verdict = "promoted" if decision.moved else "rejected"
    return {
        f"{p}decision": verdict,
        f"{p}reason": decision.reason,
        f"{p}metric": decision.metric,
        f"{p}higher_is_better": str(decision.higher_is_better).lower(),
        f"{p}candidate_score": repr(decision.candidate_score),
        f"{p}champion_score": repr(decision.champion_score)
        if decision.champion_score is not None
        else "none",
        f"{p}champion_version": decision.previous_version or "none",
        f"{p}decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def describe(decision: PromotionDecision) -> str:
    """One line for logs and CLIs."""
    verdict = "promoted" if decision.moved else "kept"
    champion = decision.champion_version or "none"
    return (
        f"{decision.name} v{decision.candidate_version}: {verdict} "
        f"({decision.reason}); {decision.alias} = v{champion}"
    )


def alias_version(name: str, alias: str, *, tracking_uri: str) -> str | None:
    """The version `alias` of `name` points at; None when no version holds it. Raises
    `ModelNotFound` when the model does not exist, `RegistryUnavailable` when unreachable."""
    client = _client(tracking_uri)
    with _translated(tracking_uri):
        try:
            return _get_version(client, name, version=None, alias=alias).version
        except NoChampion:
            return None


def set_alias(name: str, alias: str, version: str, *, tracking_uri: str) -> None:
    """Point `alias` of `name` at `version` (which must exist: `ModelNotFound` otherwise)."""
    client = _client(tracking_uri)
    with _translated(tracking_uri):
        _get_version(client, name, version=version, alias=None)
        client.set_registered_model_alias(name, alias, version)
