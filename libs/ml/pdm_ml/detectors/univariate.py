"""The univariate streaming detector the anomaly service runs for every (asset, sensor).

Three causal tests each give a tail probability p for the current reading, so one scale
(−log10 p) compares them and one threshold (p = 1e-5, fixed a priori) serves every sensor:

* **jump**: the distance from the reading to the nearer of the previous reading and the smoothed
  level, against the sensor's own tail of such jumps: a generalised-Pareto tail fitted above a
  tracked 98th percentile (peaks over threshold). Real sensors have heavy-tailed steps, and a
  Gaussian z-score on them alarms all day. Catches spikes and abrupt shifts.
* **level**: how far the smoothed level has left the range it covered in the ~4096 readings
  before the most recent block of 512 (block minima and maxima: O(1) time and memory), in units
  of its typical change over `scale_lag` readings. Catches level shifts, drifts and excursions
  into territory the sensor has not visited recently, however slowly they arrive; a new level
  stays news for at least one block, then becomes part of the normal range.
* **stuck**: a run of exactly repeated readings, against the sensor's own repeat rate.

Every statistic is divided by a scale learned from the stream (so no units, no per-sensor
numbers), the state is about 50 floats, and an update costs about 3 µs in pure Python.

An alarm is reported on the reading where an excursion first crosses the threshold, and again
on each escalation to a higher severity. While the same excursion continues, the score is held
at the re-arm level. `in_excursion` stays True and `raw_score` keeps the unheld value. So a
long anomaly is one alarm, not one per reading (ISA-18.2: no chattering, no standing floods).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType
from typing import Any

from pdm_common.events import Severity

from .base import Score

DETECTOR_NAME = "univariate"
KINDS = ("jump", "level", "stuck")
SEVERITIES: tuple[Severity, ...] = ("warning", "minor", "major", "critical")

LN10 = math.log(10.0)
SQRT1_2 = math.sqrt(0.5)
MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2.0)  # σ / E|X| for a Gaussian
HALF_NORMAL_Q98 = 2.92  # 98th percentile of |N(0,1)| / its mean: seeds the jump-tail threshold
HALF_NORMAL_EXCESS = 0.45  # mean excess above that percentile / the mean: seeds the tail scale
SEED_READINGS = 50  # readings averaged before a scale is trusted
RANGE_FLOOR_SIGMAS = 6.0  # for severity, a normal range is taken as at least ±3 σ wide
BONFERRONI = math.log10(len(KINDS))
RELATIVE_RESOLUTION = 1e-6  # float32 readings resolve ~7 digits: smaller changes are not news
MAX_TAIL_SHAPE = 0.45  # the moment fit of a generalised-Pareto shape needs ξ < 0.5
REBASELINE_QUIET = 50  # readings after a context change in which nothing is reported


@dataclass(frozen=True, slots=True)
class UnivariateConfig:
    """Defaults chosen a priori (first principles and synthetic data), the same for every sensor.

    Lengths count readings, not seconds, so one config fits 1 Hz and 5-minute sensors alike.
    """

    smoothing: int = 4  # EWMA time constant of the level, readings: averages out reading noise
    # The level test's unit: the level's typical change over 3 smoothing time constants, when
    # its own jitter has decorrelated, so the unit measures how far the level wanders.
    scale_lag: int = 12
    envelope_block: int = 512  # readings per block of the range memory
    envelope_blocks: int = 8  # blocks in the range, not counting the most recent one
    # ... and at least this long per block, so the range spans a day (a diurnal cycle and the
    # slow wander of a healthy process) however fast the sensor reports: at 1 Hz, 512
    # readings are 9 minutes, and a range that short calls ordinary wander "new territory".
    envelope_block_s: float = 10_800.0
    # A level only alarms once it is this fraction of the normal band's width beyond the
    # range: a statistically new level a hair outside a day's range is not actionable. While
    # the range covers less than `mature_range_s` (20 h: after start-up or a change of
    # operating context) it has not seen a day's cycle yet, so only an excess as large as
    # the band itself counts.
    min_level_fraction: float = 0.1
    young_level_fraction: float = 1.0
    mature_range_s: float = 72_000.0
    # Before the first block completes, the warm-up's levels are the range: minutes of a
    # process that wanders for hours, so only a level far outside them counts.
    provisional_level_fraction: float = 3.0
    tail_quantile: float = 0.02  # the jump tail is fitted above the 98th percentile
    tail_memory: int = 50  # exceedances averaged into the jump tail's scale
    quantile_step: float = 0.05  # stochastic-approximation step of that percentile (tail scales)
    scale_memory: int = 1000  # readings averaged into the level-change scale and the repeat rate
    alarm_p: float = 1e-5  # false-alarm probability per reading at the threshold ...
    # ... for a sensor reporting every `reference_interval_s`; a faster one gets a
    # proportionally smaller p (1 Hz: 3.3e-8), so the false-alarm budget is per hour of a
    # sensor's life, as an operator counts alarms, not per reading.
    reference_interval_s: float = 300.0
    rearm_p: float = 1e-3  # an excursion ends once p is back above this
    repeat_floor: float = 0.1  # an exact repeat is assumed at least this likely
    gap_factor: float = 10.0  # a step longer than this × the typical interval is a gap
    warmup: int = 512  # readings before scores are emitted (one envelope block)
    score_decades: float = 10.0  # score = −log10(p) / score_decades, clipped to [0, 1]
    # minor / major / critical once the excess is this fraction of the normal range's width
    severity_fractions: tuple[float, float, float] = (0.1, 0.25, 0.5)

    def __post_init__(self) -> None:
        if not 0.0 < self.alarm_p < self.rearm_p < 1.0:
            raise ValueError("need 0 < alarm_p < rearm_p < 1")
        lengths = (self.smoothing, self.scale_lag, self.envelope_block, self.envelope_blocks)
        if min(*lengths, self.tail_memory, self.scale_memory) < 1 or self.warmup < 0:
            raise ValueError("lengths must be >= 1 (warmup >= 0)")
        if not (0.0 < self.tail_quantile < 1.0 and 0.0 < self.repeat_floor < 1.0):
            raise ValueError("tail_quantile and repeat_floor must be in (0, 1)")

    @property
    def threshold(self) -> float:
        """Score at p = alarm_p: 0.5 with the defaults."""
        return -math.log10(self.alarm_p) / self.score_decades

    @property
    def rearm_score(self) -> float:
        return -math.log10(self.rearm_p) / self.score_decades


def gaussian_nlp(z: float) -> float:
    """−log10 P(|Z| > z) for a standard normal Z, without underflow for large z."""
    if z < 8.0:
        return -math.log10(math.erfc(z * SQRT1_2))
    return (0.5 * z * z + math.log(z * math.sqrt(math.pi / 2.0))) / LN10  # Mills ratio


def gpd_nlp(excess: float, mean: float, mean_sq: float) -> float:
    """−log10 of the generalised-Pareto survival of `excess`, fitted by moments.

    Shape ξ = (1 − mean²/var)/2, clamped to [0, 0.45]: 0 is the exponential tail (light tails
    such as Gaussian noise stay conservative), up to 0.45 for heavy-tailed sensors whose
    outliers an exponential tail would call impossible.
    """
    var = mean_sq - mean * mean
    xi = 0.5 * (1.0 - mean * mean / var) if var > 0.0 else 0.0
    if xi <= 1e-6:
        return excess / (mean * LN10)
    xi = xi if xi < MAX_TAIL_SHAPE else MAX_TAIL_SHAPE
    sigma = mean * (1.0 - xi)
    return math.log10(1.0 + xi * excess / sigma) / xi


# The mutable state, in order: `state()` / `from_state()` round-trip exactly these names.
_STATE = (
    "n",
    "last_ts",
    "dt_typ",
    "prev",
    "prev2",
    "level",
    "lag",
    "lag_pos",
    "level_scale",
    "level_n",
    "seed_sum",
    "tail_u",
    "tail_b",
    "tail_b2",
    "tail_k",
    "repeat_rate",
    "run",
    "block_lo",
    "block_hi",
    "block_n",
    "block_t0",
    "level_quiet_until",
    "quiet_until_n",
    "provisional",
    "mins",
    "maxs",
    "starts",
    "env_lo",
    "env_hi",
    "announced",
    "raw_score",
    "kind",
)
_LISTS = ("lag", "mins", "maxs", "starts")
_MAYBE_INFINITE = ("block_lo", "block_hi", "env_lo", "env_hi", "level_quiet_until")


class UnivariateDetector:
    """Streaming detector for one sensor: call `update` once per reading, in time order.

    After each update, `raw_score` (the unheld score), `kind` (the test that dominates: jump,
    level or stuck) and `in_excursion` (an alarm is open) describe the latest reading, for the
    service's alarm life cycle. `contributors` of every Score is a shared read-only mapping.
    """

    __slots__ = (
        "_alarm_nlp",
        "_c",
        "_contributors",
        "_penalty",
        "_penalty_dt",
        "_rearm_nlp",
        "_sensor",
        *_STATE,
    )

    def __init__(self, config: UnivariateConfig | None = None, sensor: str | None = None) -> None:
        self._c = config or UnivariateConfig()
        self._sensor = sensor
        self._contributors = MappingProxyType({sensor: 1.0} if sensor else {})
        self._alarm_nlp = -math.log10(self._c.alarm_p)
        self._rearm_nlp = -math.log10(self._c.rearm_p)
        self._penalty_dt, self._penalty = 0.0, 0.0  # cache of `_rate_penalty`
        self.n = 0
        self.last_ts: float | None = None
        self.dt_typ = 0.0
        self.prev = self.prev2 = self.level = 0.0
        self.lag = [0.0] * self._c.scale_lag
        self.lag_pos = 0
        self.level_scale = 0.0
        self.level_n = 0
        self.seed_sum = 0.0
        self.tail_u = self.tail_b = self.tail_b2 = 0.0
        self.tail_k = 0
        self.repeat_rate = 0.0
        self.run = 0
        self.block_lo, self.block_hi, self.block_n = math.inf, -math.inf, 0
        self.block_t0: float | None = None
        self.level_quiet_until = -math.inf
        self.quiet_until_n = 0
        # Until the first block of the range is complete, the levels of the warm-up stand in
        # as a provisional range (judged with the young gate), so a level shift soon after
        # start-up is held as an ongoing excursion rather than forgotten after its jump.
        self.provisional = False
        self.mins: list[float] = []
        self.maxs: list[float] = []
        self.starts: list[float] = []  # when each remembered block began
        self.env_lo, self.env_hi = math.inf, -math.inf
        self.announced = -1
        self.raw_score = 0.0
        self.kind = ""

    @property
    def config(self) -> UnivariateConfig:
        return self._c

    @property
    def threshold(self) -> float:
        return self._c.threshold

    @property
    def ready(self) -> bool:
        """Enough history to judge a reading; scores are 0 before."""
        return self.n >= self._c.warmup

    @property
    def in_excursion(self) -> bool:
        """An alarm was reported and the readings have not returned to normal yet."""
        return self.announced >= 0

    def warm(self, values: Sequence[float], timestamps: Sequence[float] | None = None) -> None:
        """Learn from history (e.g. recent rows of `readings`) without reporting alarms.

        Without timestamps the values are taken as evenly spaced at the typical interval.
        """
        step = self.dt_typ or 1.0
        start = (self.last_ts or 0.0) + step
        for i, value in enumerate(values):
            self.update(timestamps[i] if timestamps is not None else start + i * step, value)
        self.announced = -1

    def update(self, ts: float, value: float) -> Score:
        """Score one reading (`ts` in epoch seconds) and learn from it. Never looks ahead."""
        c = self._c
        x = float(value)
        n = self.n
        if n == 0:
            self.prev = self.prev2 = self.level = self.block_lo = self.block_hi = x
            self.lag = [x] * c.scale_lag
        ratio = self._interval_ratio(ts)
        prev, prev2, level = self.prev, self.prev2, self.level

        # Jump: to the nearer of the last reading and the level, so it suits white noise and
        # random-walk-like signals alike; across a gap, random-walk scaling.
        jump, off = abs(x - prev), abs(x - level)
        y = off if off < jump else jump
        if ratio > 1.0:
            y /= math.sqrt(ratio)
        nlp_jump = self._jump_nlp(y, n)

        # Level: an EWMA of the median of the last three readings (one outlier cannot move it).
        if x < prev:
            med = prev if prev < prev2 else prev2 if x < prev2 else x
        else:
            med = prev if prev > prev2 else prev2 if x > prev2 else x
        self.level = level = level + (med - level) / c.smoothing
        nlp_level, excess = (
            self._level_nlp(level)
            if (self.mins or self.provisional) and ts >= self.level_quiet_until
            else (0.0, 0.0)
        )

        # Stuck: a run of exact repeats, each as likely as the sensor's repeat rate.
        same = x == prev and n > 0
        self.run = run = self.run + 1 if same else 0
        rate = self.repeat_rate
        nlp_stuck = (
            run * -math.log10(rate if rate > c.repeat_floor else c.repeat_floor) if run else 0.0
        )

        nlp, kind, size = nlp_jump, 0, y
        if nlp_level > nlp:
            nlp, kind, size = nlp_level, 1, excess
        if nlp_stuck > nlp:
            nlp, kind, size = nlp_stuck, 2, 0.0
        nlp -= BONFERRONI + self._rate_penalty()
        raw = nlp / c.score_decades
        self.raw_score = raw = 1.0 if raw > 1.0 else 0.0 if raw < 0.0 else raw
        self.kind = KINDS[kind] if nlp > 0.0 else ""

        # Learn; a test does not learn from the readings on which it alarms.
        learn_limit = self._alarm_nlp + BONFERRONI
        if n > SEED_READINGS and nlp_jump < learn_limit:
            self._learn_jump(y)
        if ratio <= c.gap_factor:
            self._learn_level_scale(level)
        if n > 0 and nlp_stuck < learn_limit:
            self.repeat_rate = rate + (same - rate) / (n if n < c.scale_memory else c.scale_memory)
        relative_size = size / self._normal_width() if nlp >= self._alarm_nlp else 0.0
        self.prev2, self.prev = prev, x
        self._add_to_range(level, ts)
        self.n = n + 1
        if self.n == c.warmup and not self.mins:
            self.env_lo, self.env_hi, self.provisional = self.block_lo, self.block_hi, True

        if n < c.warmup or n < self.quiet_until_n:
            self.announced = -1
            return Score(DETECTOR_NAME, 0.0, c.threshold, None, self._contributors)
        return self._verdict(nlp, raw, relative_size)

    def _rate_penalty(self) -> float:
        """Decades added to the threshold for a sensor faster than the reference interval."""
        typ = self.dt_typ
        if typ != self._penalty_dt:  # steady sampling: computed once
            ref = self._c.reference_interval_s
            self._penalty = math.log10(ref / typ) if 0.0 < typ < ref else 0.0
            self._penalty_dt = typ
        return self._penalty

    # ---- the tests ----
    def _interval_ratio(self, ts: float) -> float:
        """This step over the typical step (tracked median); 1 for repeated or backward times."""
        last, self.last_ts = self.last_ts, ts
        if last is None or ts <= last:
            return 1.0
        dt = ts - last
        typ = self.dt_typ
        if typ <= 0.0:
            typ = dt
        self.dt_typ = typ * 1.05 if dt > typ else typ / 1.05 if dt < typ else typ
        return dt / typ

    def _jump_nlp(self, y: float, n: int) -> float:
        """−log10 P(jump ≥ y) from the fitted tail; seeds the tail after 50 readings."""
        if n <= SEED_READINGS:
            if n > 0:
                self.seed_sum += y
            if n == SEED_READINGS:
                mean = self.seed_sum / SEED_READINGS
                self.tail_u, self.tail_b = HALF_NORMAL_Q98 * mean, HALF_NORMAL_EXCESS * mean
                self.tail_b2 = 2.0 * self.tail_b**2  # exponential tail: E[e²] = 2·E[e]²
                self.tail_k = 1 if mean > 0.0 else 0
            return 0.0
        u, b = self.tail_u, self.tail_b
        base = -math.log10(self._c.tail_quantile)
        if y <= u:
            return base * y / u if u > 0.0 else 0.0
        if b <= 0.0:
            # A sensor that never jumped: p ≈ 1/(n+1) whatever the size (rule of succession).
            return math.log10(n + 1.0)
        return base + gpd_nlp(y - u, b, self.tail_b2)

    def _learn_jump(self, y: float) -> None:
        """Robbins-Monro step of the 98th percentile; running moments of the excess above it."""
        c = self._c
        u, b = self.tail_u, self.tail_b
        if y > u:
            self.tail_k = k = self.tail_k + 1
            w = 1.0 / (k if k < c.tail_memory else c.tail_memory)
            e = y - u
            self.tail_b = b = b + (e - b) * w
            self.tail_b2 += (e * e - self.tail_b2) * w
            u += c.quantile_step * b * (1.0 - c.tail_quantile)
        else:
            u -= c.quantile_step * b * c.tail_quantile
        self.tail_u = u if u > 0.0 else 0.0

    def _level_nlp(self, level: float) -> tuple[float, float]:
        """(−log10 p, excess) of the level beyond the remembered range, Gaussian in σ units."""
        scale = self.level_scale
        if self.level_n < SEED_READINGS:  # no scale to judge by yet
            return 0.0, 0.0
        resolution = RELATIVE_RESOLUTION * abs(level)
        scale = scale if scale > resolution else resolution
        if scale <= 0.0:
            return 0.0, 0.0
        excess = self.env_lo - level if level < self.env_lo else level - self.env_hi
        # The gate makes an excursion harder to start than to continue (a deadband, as
        # ISA-18.2 asks): an open one is held by any excess beyond the range.
        gate = self._level_gate() if self.announced < 0 else 0.0
        if excess <= 0.0 or excess < gate * self._normal_width():
            return 0.0, 0.0
        return gaussian_nlp(excess / (scale * MEAN_ABS_TO_SIGMA)), excess

    def _learn_level_scale(self, level: float) -> None:
        """Mean |level change| over `scale_lag` readings; averaging starts at the first change,
        so a constant signal that starts to move learns its scale instead of screaming."""
        pos = self.lag_pos
        change = abs(level - self.lag[pos])
        self.lag[pos] = level
        self.lag_pos = (pos + 1) % self._c.scale_lag
        if self.level_n or change > 0.0:
            self.level_n += 1
            scale = self.level_scale
            self.level_scale = scale + (change - scale) / min(self.level_n, self._c.scale_memory)

    def _normal_width(self) -> float:
        """Width of the normal band of readings: the level's range plus a typical jump each side."""
        ranged = self.mins or self.provisional
        width = self.env_hi - self.env_lo if ranged else self.block_hi - self.block_lo
        floor = RANGE_FLOOR_SIGMAS * self.level_scale * MEAN_ABS_TO_SIGMA
        width = (width if width > floor else floor) + 2.0 * self.tail_u
        return width if width > 0.0 else math.inf

    def _add_to_range(self, level: float, ts: float) -> None:
        """Track the block's extremes. The range is that of the full blocks before the most
        recent one, so an excursion is compared with a range it has not yet entered, whatever
        the phase of the block clock (the first block stands in until there are two)."""
        if level < self.block_lo:
            self.block_lo = level
        if level > self.block_hi:
            self.block_hi = level
        self.block_n += 1
        if self.block_t0 is None:
            self.block_t0 = ts
        if self.block_n < self._c.envelope_block or ts - self.block_t0 < self._c.envelope_block_s:
            return
        self.mins.append(self.block_lo)
        self.maxs.append(self.block_hi)
        self.starts.append(self.block_t0)
        if len(self.mins) > self._c.envelope_blocks + 1:
            del self.mins[0], self.maxs[0], self.starts[0]
        older = len(self.mins) - 1 if len(self.mins) > 1 else 1
        self.env_lo, self.env_hi = min(self.mins[:older]), max(self.maxs[:older])
        self.provisional = False
        self.block_lo, self.block_hi, self.block_n = math.inf, -math.inf, 0
        self.block_t0 = None

    def _level_gate(self) -> float:
        """Smallest excess (fraction of the normal width) that counts, by the range's age."""
        c = self._c
        if self.provisional:
            return c.provisional_level_fraction
        span = self.starts[-1] - self.starts[0] if len(self.starts) > 1 else 0.0
        return c.min_level_fraction if span >= c.mature_range_s else c.young_level_fraction

    def rebaseline(self, ts: float, settle_s: float = 0.0) -> None:
        """The operating context changed on purpose (new operating point, repair): forget
        the range of levels, so the new normal is learned instead of alarmed, and keep the
        level test quiet for `settle_s` (a temperature travelling to its new steady state).
        The jump and stuck tests keep their scales and stay quiet for `REBASELINE_QUIET`
        readings (the step of the change itself is not news); an open excursion ends."""
        self.mins, self.maxs, self.starts = [], [], []
        self.env_lo, self.env_hi, self.provisional = math.inf, -math.inf, False
        self.block_lo = self.block_hi = self.level
        self.block_n, self.block_t0 = 0, ts
        self.level_quiet_until = ts + settle_s
        self.quiet_until_n = self.n + REBASELINE_QUIET
        self.announced = -1

    # ---- alarm gating ----
    def _verdict(self, nlp: float, raw: float, relative_size: float) -> Score:
        """Report an excursion once per new severity; hold the score below threshold between."""
        c = self._c
        if nlp < self._alarm_nlp:
            if self.announced >= 0 and nlp < self._rearm_nlp:
                self.announced = -1
            held = raw if self.announced < 0 else min(raw, c.rearm_score)
            return Score(DETECTOR_NAME, held, c.threshold, None, self._contributors)
        sev = 0
        for fraction in c.severity_fractions:
            sev += relative_size >= fraction
        if sev > self.announced:
            self.announced = sev
            return Score(DETECTOR_NAME, raw, c.threshold, SEVERITIES[sev], self._contributors)
        return Score(DETECTOR_NAME, c.rearm_score, c.threshold, None, self._contributors)

    # ---- persistence ----
    def state(self) -> dict[str, Any]:
        """Plain-JSON state, config included (≈ 50 numbers; infinities stored as None)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _STATE}
        for name in _LISTS:
            out[name] = list(out[name])
        for name in _MAYBE_INFINITE:
            out[name] = None if math.isinf(out[name]) else out[name]
        out["config"] = asdict(self._c)
        out["sensor"] = self._sensor
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UnivariateDetector:
        known = {f.name for f in fields(UnivariateConfig)}
        config = {k: v for k, v in state["config"].items() if k in known}
        if "severity_fractions" in config:
            config["severity_fractions"] = tuple(config["severity_fractions"])
        det = cls(UnivariateConfig(**config), state.get("sensor"))
        for name in _STATE:
            setattr(det, name, state[name])
        for name in _LISTS:
            setattr(det, name, list(state[name]))
        for sign, name in zip((1, -1, 1, -1, -1), _MAYBE_INFINITE, strict=True):
            if state[name] is None:
                setattr(det, name, sign * math.inf)
        return det
