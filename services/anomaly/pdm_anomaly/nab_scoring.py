"""NAB v1.1 scoring for one data file (Lavin & Ahmad, ICMLA 2015), as pure functions.

Implements `../shared/data/nab/PROVENANCE.md`, "NAB scoring, precisely enough to implement"
(NAB `nab/sweeper.py` at `ea702d7`): a detection inside a window is worth more the earlier it
comes (scaled sigmoid), only the earliest detection of a window counts, a missed window costs
`A_FN`, and *every* detection row outside a window costs up to `A_FP` (less just after a window).
Rows in the probationary period are ignored. Windows are inclusive `(left, right)` row indices.

A score reported for a detector must use a threshold fixed in advance; `optimise_threshold`
(NAB's sweep over the distinct score values) exists for orientation only, because a threshold
tuned on the file it is scored on flatters the detector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

Window = tuple[int, int]
"""Inclusive row indices `(left, right)` of one anomaly window."""

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750  # NAB: min(floor(0.15 * N), 0.15 * 5000)
SIGMOID_CUTOFF = 3.0  # S(y) = -1 beyond 3 window widths


@dataclass(frozen=True, slots=True)
class Profile:
    """A NAB cost profile (`config/profiles.json`; `tnWeight` is unused by NAB)."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


STANDARD = Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0)
REWARD_LOW_FP = Profile("reward_low_FP_rate", a_tp=1.0, a_fp=0.22, a_fn=1.0)
REWARD_LOW_FN = Profile("reward_low_FN_rate", a_tp=1.0, a_fp=0.11, a_fn=2.0)
PROFILES: tuple[Profile, ...] = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


@dataclass(frozen=True, slots=True)
class NabScore:
    """One file scored under one profile at one threshold.

    `tp_rows`/`fp_rows` count detection *rows* (as NAB's score files do), not windows.
    `threshold` is `inf` for "never detects".
    """

    profile: str
    threshold: float
    raw: float
    normalised: float
    tp_rows: int
    fp_rows: int
    windows_detected: int
    n_windows: int
    window_scores: tuple[float, ...]
    fp_total: float


def scaled_sigmoid(y: float) -> float:
    """NAB's S(y) = 2·σ(−5y) − 1 for y ≤ 3, else −1: S(−1) = 0.98661, S(0) = 0, S(1) = −0.98661.

    As PROVENANCE.md states it; NAB's code cuts at y ≥ 3, which differs by 3e-7 at y = 3 only.
    """
    if y > SIGMOID_CUTOFF:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_length(n_rows: int) -> int:
    """Rows at the start of a file that are never scored (the detector's learning period)."""
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS))


def window_rows(
    timestamps: Sequence[datetime], windows: Sequence[tuple[datetime, datetime]]
) -> list[Window]:
    """Map windows given as timestamps to row indices, as NAB does (first row with that time).

    A file with a backwards time jump has repeated timestamps; NAB's `list.index` picks the
    first occurrence, and so does this.
    """
    first: dict[datetime, int] = {}
    for i, ts in enumerate(timestamps):
        first.setdefault(ts, i)
    try:
        return [(first[left], first[right]) for left, right in windows]
    except KeyError as exc:
        raise ValueError(f"window edge {exc.args[0]} is not a timestamp of the file") from exc


def check_windows(windows: Sequence[Window], n_rows: int) -> None:
    """Reject windows NAB would never produce: unordered, overlapping, or inside probation."""
    probation = probation_length(n_rows)
    prev_right = -1
    for left, right in windows:
        if not (probation <= left <= right < n_rows):
            raise ValueError(f"window {(left, right)} outside rows [{probation}, {n_rows})")
        if left <= prev_right:
            raise ValueError(f"window {(left, right)} overlaps or precedes the previous one")
        prev_right = right


def null_raw(n_windows: int, profile: Profile) -> float:
    """Raw score of a detector that never fires: every window missed."""
    return -profile.a_fn * n_windows


def perfect_raw(n_windows: int, profile: Profile) -> float:
    """Raw score of a detector that fires exactly on each window's first row, nowhere else."""
    return profile.a_tp * n_windows


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    """100·(raw − null)/(perfect − null): 0 = null detector, 100 = perfect."""
    null = null_raw(n_windows, profile)
    return 100.0 * (raw - null) / (perfect_raw(n_windows, profile) - null)


def row_values(n_rows: int, windows: Sequence[Window], profile: Profile) -> list[float]:
    """What a detection at each row is worth (probation rows included; callers skip them).

    Inside a window: A_TP·S(pos)/S(−1) with pos = −(R − i + 1)/W. Outside: −A_FP before any
    window has ended, else A_FP·S(|i − R_prev|/(W_prev − 1)).
    """
    values = [-profile.a_fp] * n_rows
    max_tp = scaled_sigmoid(-1.0)
    for k, (left, right) in enumerate(windows):
        width = right - left + 1
        for i in range(left, right + 1):
            values[i] = profile.a_tp * scaled_sigmoid(-(right - i + 1) / width) / max_tp
        end = windows[k + 1][0] if k + 1 < len(windows) else n_rows
        for i in range(right + 1, end):
            # NAB divides by W − 1; a one-row window would divide by zero there, so treat it as 1.
            values[i] = profile.a_fp * scaled_sigmoid(abs(i - right) / max(width - 1, 1))
    return values


def row_windows(n_rows: int, windows: Sequence[Window]) -> list[int]:
    """Index of the window each row lies in, or −1 outside every window."""
    owner = [-1] * n_rows
    for k, (left, right) in enumerate(windows):
        owner[left : right + 1] = [k] * (right - left + 1)
    return owner


def score_detections(
    detected: Sequence[bool],
    windows: Sequence[Window],
    profile: Profile,
    threshold: float = math.nan,
) -> NabScore:
    """Score a boolean detection per row (`threshold` is only recorded in the result)."""
    n_rows = len(detected)
    check_windows(windows, n_rows)
    values = row_values(n_rows, windows, profile)
    owner = row_windows(n_rows, windows)
    window_scores = [-profile.a_fn] * len(windows)
    hit = [False] * len(windows)
    fp_total, tp_rows, fp_rows = 0.0, 0, 0
    for i in range(probation_length(n_rows), n_rows):
        if not detected[i]:
            continue
        k = owner[i]
        if k < 0:
            fp_rows += 1
            fp_total += values[i]
        else:
            tp_rows += 1
            if not hit[k]:  # rows come in order, so the first hit is the earliest (and best)
                hit[k] = True
                window_scores[k] = values[i]
    raw = sum(window_scores) + fp_total
    return NabScore(
        profile=profile.name,
        threshold=threshold,
        raw=raw,
        normalised=normalise(raw, len(windows), profile),
        tp_rows=tp_rows,
        fp_rows=fp_rows,
        windows_detected=sum(hit),
        n_windows=len(windows),
        window_scores=tuple(window_scores),
        fp_total=fp_total,
    )


def score_at_threshold(
    scores: Sequence[float], threshold: float, windows: Sequence[Window], profile: Profile
) -> NabScore:
    """Score a detector's anomaly scores: row i is a detection iff `scores[i] >= threshold`."""
    return score_detections([s >= threshold for s in scores], windows, profile, threshold)


def optimise_threshold(
    scores: Sequence[float], windows: Sequence[Window], profile: Profile
) -> NabScore:
    """NAB's optimiser: the threshold among the distinct scores that maximises the raw score.

    Sweeps thresholds from high to low, adding one row at a time (O(N log N)). Ties go to the
    highest threshold; "never detect" (threshold inf, the null score) is a candidate too. For
    orientation only: a threshold picked on the file it is scored on is not a fair result.
    """
    n_rows = len(scores)
    check_windows(windows, n_rows)
    values = row_values(n_rows, windows, profile)
    owner = row_windows(n_rows, windows)
    start = probation_length(n_rows)
    order = sorted(range(start, n_rows), key=lambda i: scores[i], reverse=True)
    window_scores = [-profile.a_fn] * len(windows)
    fp_total = 0.0
    best_raw, best_threshold = sum(window_scores), math.inf
    for pos, i in enumerate(order):
        k = owner[i]
        if k < 0:
            fp_total += values[i]
        else:
            window_scores[k] = max(window_scores[k], values[i])
        last_of_group = pos + 1 == len(order) or scores[order[pos + 1]] != scores[i]
        if last_of_group:
            raw = sum(window_scores) + fp_total
            if raw > best_raw + 1e-12:
                best_raw, best_threshold = raw, scores[i]
    if math.isinf(best_threshold):
        return score_detections([False] * n_rows, windows, profile, math.inf)
    return score_at_threshold(scores, best_threshold, windows, profile)
