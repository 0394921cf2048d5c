"""Sets of hours as Python integers (bit t = hour t): the pre-check, the greedy baseline, the
model's start domains and the `bound_by` explanation all ask "where can a job of d hours start
so that it lies inside these blocks and clear of those?", and bit operations on a 336-bit
integer answer that for a whole horizon at once, in pure Python.

A *start mask* for duration `d` has bit `t` set when the job `[t, t + d)` is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pdm_scheduling.model import Span


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted union of half-open intervals; touching intervals become one."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def clip(spans: Iterable[Span], lo: int, hi: int) -> list[Span]:
    return [(max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo)]


def span_bits(start: int, end: int) -> int:
    """Hours `start .. end - 1` (both >= 0)."""
    return ((1 << (end - start)) - 1) << start if end > start else 0


def hours_mask(spans: Iterable[Span], horizon: int) -> int:
    mask = 0
    for s, e in clip(spans, 0, horizon):
        mask |= span_bits(s, e)
    return mask


def starts_inside(blocks: Iterable[Span], duration: int, horizon: int) -> int:
    """Starts `t` with `[t, t + duration)` inside one of the merged `blocks` and the horizon."""
    mask = 0
    for s, e in clip(merge(blocks), 0, horizon):
        if e - s >= duration:
            mask |= span_bits(s, e - duration + 1)
    return mask


def starts_clear_of(occupied: int, duration: int, horizon: int) -> int:
    """Starts `t` with no hour of `[t, t + duration)` in `occupied`, ending by the horizon."""
    blocked = 0
    for i in range(duration):
        blocked |= occupied >> i
    return ~blocked & span_bits(0, horizon - duration + 1)


def runs(mask: int) -> Iterator[Span]:
    """The maximal runs of set bits as half-open intervals, in order."""
    offset = 0
    while mask:
        low = (mask & -mask).bit_length() - 1
        mask >>= low
        offset += low
        length = (~mask & (mask + 1)).bit_length() - 1  # trailing ones
        yield (offset, offset + length)
        mask >>= length
        offset += length


def lowest(mask: int) -> int:
    """The lowest set bit (mask must be non-zero)."""
    return (mask & -mask).bit_length() - 1


def bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def intersect(a: list[Span], b: list[Span]) -> list[Span]:
    """Intersection of two merged (sorted, disjoint) interval lists."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
