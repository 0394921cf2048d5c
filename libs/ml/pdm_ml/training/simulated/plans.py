"""Fleet plans (pure: a plan from a seed): what happens to each generated machine, in
snapshot rows, and which machines are held out."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from pdm_ml.training.simulated.config import SimConfig, failure_modes

Kind = Literal["failure", "interference", "healthy"]


@dataclass(frozen=True, slots=True)
class MachinePlan:
    """What happens to one generated machine, in snapshot rows from its first one."""

    asset_id: str
    kind: Kind
    rows: int
    scenario: str
    start_s: float  # seconds after EPOCH of row 0 (the time of day varies)
    mode: str | None = None
    severity: str = "medium"
    inject_at: int | None = None
    ramp_rows: float = 0.0
    switches: tuple[tuple[int, str], ...] = ()  # (row, new scenario), in row order
    censored: bool = False
    repair_at: int | None = None  # row at which the failure is cleared (a repair)
    holdout: bool = False
    step_s: float = 60.0  # seconds between two snapshots of this machine

    @property
    def failure_row(self) -> float | None:
        """Row (fractional) at which a real failure is due; None when none is."""
        if self.kind != "failure" or self.inject_at is None:
            return None
        return self.inject_at + self.ramp_rows

    @property
    def stratum(self) -> str:
        return f"{self.kind}:{self.mode or ''}"


def plan_fleet(config: SimConfig) -> list[MachinePlan]:
    """Deterministic plans for `config.machines` machines (see the package docstring)."""
    from pdm_ml.simulation.machines import SCENARIOS, SEVERITY_LEVELS, asset_id_for

    config.check()
    rng = np.random.default_rng([config.seed, zlib.crc32(config.asset_type.encode())])
    n = config.machines
    n_healthy = round(config.healthy_share * n)
    n_interference = round(config.interference_share * n)
    modes = failure_modes(config.asset_type)
    kinds: list[tuple[Kind, str | None]] = [("healthy", None)] * n_healthy
    kinds += [("interference", "sensor_interference")] * n_interference
    kinds += [("failure", modes[i % len(modes)]) for i in range(n - n_healthy - n_interference)]
    scenarios = sorted(SCENARIOS)
    low, high = (math.log(v) for v in config.ramp_snapshots)
    step_low, step_high = (math.log(v) for v in config.sampling_s or (config.period_s,) * 2)
    plans: list[MachinePlan] = []
    for i, (kind, mode) in enumerate(kinds):
        asset_id = asset_id_for(config.asset_type, i + 1)
        scenario = str(rng.choice(scenarios))
        start_s = float(rng.uniform(0.0, 86_400.0))
        severity = str(rng.choice(SEVERITY_LEVELS))
        ramp = float(math.exp(rng.uniform(low, high)))
        pre = int(rng.integers(config.pre_snapshots[0], config.pre_snapshots[1] + 1))
        if kind == "healthy":
            rows = int(rng.integers(config.healthy_rows[0], config.healthy_rows[1] + 1))
            plan = MachinePlan(asset_id, kind, rows, scenario, start_s)
        elif kind == "interference":
            rows = pre + int(rng.integers(config.healthy_rows[0] // 2, config.healthy_rows[1]))
            plan = MachinePlan(asset_id, kind, rows, scenario, start_s, mode, severity, pre, ramp)
        else:
            censored = bool(rng.random() < config.censored_share)
            repair_at: int | None = None
            end = pre + math.ceil(ramp) + int(rng.integers(0, config.post_snapshots + 1))
            if censored:
                rows = pre + max(1, int(ramp * rng.uniform(0.3, 1.0)))
            elif rng.random() < config.repair_share:
                preventive = rng.random() < 0.5
                repair_at = pre + max(1, int(ramp * rng.uniform(0.6, 1.0))) if preventive else end
                low_after, high_after = config.after_repair
                rows = repair_at + int(rng.integers(low_after, high_after + 1))
            else:
                rows = end
            plan = MachinePlan(
                asset_id, kind, rows, scenario, start_s, mode, severity, pre, ramp,
                censored=censored, repair_at=repair_at,
            )  # fmt: skip
        switches: list[tuple[int, str]] = []
        at, current = 0.0, scenario
        while True:
            at += float(rng.exponential(config.switch_every))
            if at >= plan.rows:
                break
            current = str(rng.choice([s for s in scenarios if s != current]))
            switches.append((int(at), current))
        drawn = float(math.exp(rng.uniform(step_low, step_high)))  # drawn either way
        step_s = drawn if config.sampling_s is not None else config.period_s
        plans.append(replace(plan, switches=tuple(switches), step_s=step_s))
    return _assign_holdout(plans, config.holdout, rng)


def _assign_holdout(
    plans: list[MachinePlan], share: float, rng: np.random.Generator
) -> list[MachinePlan]:
    """Hold out `share` of the machines of every stratum (kind, mode), at random."""
    out = list(plans)
    strata: dict[str, list[int]] = {}
    for i, plan in enumerate(plans):
        strata.setdefault(plan.stratum, []).append(i)
    for members in strata.values():
        chosen = rng.permutation(members)[: max(1, round(share * len(members)))]
        for i in chosen:
            out[int(i)] = replace(out[int(i)], holdout=True)
    return out
