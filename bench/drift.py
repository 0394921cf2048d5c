"""Drift-check benchmark (`pdm_ml.drift`), in process, no services.

Synthetic, seeded: `--features` numeric columns (normal, lognormal, uniform, gamma and a
bimodal mix, in turn) with `--reference` and `--current` rows; every fifth column is shifted in
the current frame, by 0.02 to 1.0 reference standard deviations (some below Evidently's 0.1
threshold, some at it, most above); 1 % NaN in the current frame. Measured in the same run:

(a) `build_profile` of the reference (once per model version, at registration),
(b) `check` of the current frame against that profile (every scheduled check),
(c) Evidently's `DataDriftPreset` on the same two frames (`Report.run` only, no rendering),

and how many per-column verdicts of (b) and (c) agree. Goal: (b) <= 10 s and >= 10x faster
than (c). Evidently is not a project dependency: run with an interpreter that has it, e.g.
a venv with `evidently==0.7.23` on top of the project's packages.

    python bench/drift.py                       # 50 x 100,000 against 100,000
    python bench/drift.py --features 20 --current 20000 --reference 20000 --no-evidently
"""

from __future__ import annotations

import argparse
import importlib
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pdm_ml.drift import build_profile, check, evidently_verdicts

SHIFTS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def frames(
    features: int, n_ref: int, n_cur: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    rng = np.random.default_rng(seed)

    def column(j: int, n: int) -> np.ndarray:
        kind = j % 5
        if kind == 0:
            return rng.normal(50 + j, 5, n)
        if kind == 1:
            return rng.lognormal(1.0, 0.6, n)
        if kind == 2:
            return rng.uniform(0, 10, n)
        if kind == 3:
            return rng.gamma(2.0, 3.0, n)
        return np.where(rng.random(n) < 0.3, rng.normal(20, 2, n), rng.normal(30, 3, n))

    ref = pd.DataFrame({f"f{j:02d}": column(j, n_ref) for j in range(features)})
    cur = pd.DataFrame({f"f{j:02d}": column(j, n_cur) for j in range(features)})
    shifted: dict[str, float] = {}
    for i, j in enumerate(range(0, features, 5)):
        name = f"f{j:02d}"
        k = SHIFTS[i % len(SHIFTS)]
        cur[name] += k * ref[name].std()
        shifted[name] = k
    holes = rng.random(cur.shape) < 0.01
    cur = cur.mask(holes)
    return ref, cur, shifted


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--reference", type=int, default=100_000)
    ap.add_argument("--current", type=int, default=100_000)
    ap.add_argument("--max-sample", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()

    ref, cur, shifted = frames(args.features, args.reference, args.current, args.seed)
    print(f"{args.features} features, reference {len(ref):,} rows, current {len(cur):,} rows")

    t0 = time.perf_counter()
    profile = build_profile(ref, max_sample=args.max_sample)
    t_profile = time.perf_counter() - t0
    profile_bytes = len(profile.to_json().encode())
    print(f"(a) build_profile: {t_profile:.2f} s, {profile_bytes / 1024:.0f} KiB of JSON")

    t0 = time.perf_counter()
    result = check(profile, cur)
    t_check = time.perf_counter() - t0
    print(
        f"(b) check: {t_check:.2f} s, {result.n_drifted}/{result.n_checked} columns drifted"
        f" (shifted: {len(shifted)})"
    )

    out: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "params": vars(args),
        "shifted_columns": shifted,
        "build_profile_s": round(t_profile, 3),
        "profile_json_bytes": profile_bytes,
        "check_s": round(t_check, 3),
        "drifted_ours": result.drifted_columns(),
        "statistics_ours": {c: round(v.statistic, 5) for c, v in result.columns.items()},
    }
    if not args.no_evidently:
        evidently = importlib.import_module("evidently")
        presets = importlib.import_module("evidently.presets")
        t0 = time.perf_counter()
        snapshot = evidently.Report([presets.DataDriftPreset()]).run(
            current_data=cur, reference_data=ref
        )
        t_evidently = time.perf_counter() - t0
        theirs = evidently_verdicts(snapshot.dict())
        agree = [c for c in theirs if result.columns[c].drifted == theirs[c][2]]
        differ = {
            c: {"evidently": round(theirs[c][1], 5), "ours": round(result.columns[c].statistic, 5)}
            for c in theirs
            if c not in agree
        }
        max_diff = max(abs(result.columns[c].statistic - theirs[c][1]) for c in theirs)
        print(
            f"(c) Evidently DataDriftPreset: {t_evidently:.2f} s,"
            f" {sum(v[2] for v in theirs.values())}/{len(theirs)} drifted"
        )
        print(
            f"speed-up (c)/(b): {t_evidently / t_check:.1f}x; verdicts agree on"
            f" {len(agree)}/{len(theirs)} columns; largest statistic difference {max_diff:.5f}"
        )
        if differ:
            print("disagreements:", differ)
        out |= {
            "evidently_s": round(t_evidently, 3),
            "speedup": round(t_evidently / t_check, 1),
            "verdicts_agree": len(agree),
            "verdicts_total": len(theirs),
            "disagreements": differ,
            "max_statistic_difference": round(max_diff, 6),
            "drifted_evidently": [c for c, v in theirs.items() if v[2]],
        }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    import benchkit

    out["machine"] = benchkit.machine()
    out["peak_rss_mib"] = round(peak)
    benchkit.save("drift", out, as_baseline=args.save_baseline)


if __name__ == "__main__":
    main()
