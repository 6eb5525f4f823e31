#!/usr/bin/env python
"""What the density ratio loses when its pool is a sample (not a test: prints a table).

Above ``MAX_POOLED`` (20,000) reference + scored images, ``DensityRatio``
searches a seeded sample of that many rows (the smaller set whole up to half
of it) and scores every other row against the sample; before, it left the ratio
out there and every image was scored on its own. A user with 60,000 images
pools a third of them, with 200,000 a tenth. The study's conditions are far
smaller, so this script lowers the cap per condition to a fraction ``f`` of
its reference + scored rows and runs the default detector
(``benchmarks/robustness.py``'s default row) on the 99 OOD conditions with a
reference that are not rare (20-50% of the scored set OOD; in the rare ones the
ratio stays out anyway). Columns: mean / worst AUROC (positive = OOD), how
many conditions lose more than 0.01 against the whole pool and against each
image on its own, and in how many the permutation test used the ratio. ``f = 1`` is the whole pool (it must equal the
study's stored AUROCs: printed as the largest difference), and "on its own" is
``transductive="never"``, what the product did above the cap before.

Run (about 10 minutes on 2 cores; needs the study's embedding cache, built on
first use by ``benchmarks/robust_data.py``)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_pool_sample.py
"""

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import robustness as R  # noqa: E402

from ood_core.detectors import transductive  # noqa: E402
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

FRACTIONS = (1.0, 0.5, 0.25, 0.1)
#: no pool below this many rows (the ratio's ranks need a few per set)
MIN_POOL = 100


def run(cond, S, mode="auto"):
    det = PyramidKNNDetector(level_dims=S.level_dims, transductive=mode).fit(cond["X_ref"], cond["y_ref"])
    scores = det.score_samples(cond["X_test"])
    return ood_metrics(scores, cond["is_ood"])["auroc"], bool(det.transductive_ and det.transductive_["used"])


def main():
    sources = R.load_sources()
    stored = {r["name"]: r["methods"] for r in json.load(open(os.path.join(HERE, "results", "robustness_raw.json")))["ood"]}
    rows, t0 = [], time.time()
    for cond in R.ood_conditions(sources):
        if cond["X_ref"] is None or cond["group"] == "rare":
            continue
        S = sources[cond["source"]]
        n = cond["X_ref"].shape[0] + cond["X_test"].shape[0]
        row = {"name": cond["name"], "n": n, "never": run(cond, S, "never")[0]}
        for f in FRACTIONS:
            transductive.MAX_POOLED = max(MIN_POOL, int(f * n)) if f < 1 else n
            row[f] = run(cond, S)
        transductive.MAX_POOLED = 20000
        rows.append(row)
        print(f"{len(rows):>3} {cond['name'][:60]:<60} n={n:>5} " + " ".join(
            f"{row[f][0]:.3f}" for f in FRACTIONS) + f"  alone {row['never']:.3f}  ({time.time() - t0:.0f} s)",
            flush=True)
    drift = max(abs(r[1.0][0] - stored[r["name"]][R.DEFAULT_OOD]["auroc"]) for r in rows)
    lines = [f"{len(rows)} OOD conditions with a reference, 20-50% of the scored set OOD (positive = OOD); "
             f"reference + scored rows {min(r['n'] for r in rows):,}-{max(r['n'] for r in rows):,}",
             f"whole pool vs the study's stored default AUROCs: largest difference {drift:.1e}",
             "'below whole' / 'below alone': conditions more than 0.01 below the whole pool / below each image "
             "on its own",
             f"{'pool':<28} {'mean AUROC':>10} {'worst':>6} {'below whole':>11} {'below alone':>11} {'ratio used':>10}"]
    full = np.array([r[1.0][0] for r in rows])
    alone = np.array([r["never"] for r in rows])
    for f in FRACTIONS:
        a = np.array([r[f][0] for r in rows])
        used = sum(r[f][1] for r in rows)
        label = "whole pool" if f == 1 else f"sample of {f:.0%} of the rows"
        lines.append(f"{label:<28} {a.mean():>10.3f} {a.min():>6.3f} {int((a < full - 0.01).sum()):>11} "
                     f"{int((a < alone - 0.01).sum()):>11} {used:>10}")
    lines.append(f"{'each image on its own':<28} {alone.mean():>10.3f} {alone.min():>6.3f} "
                 f"{int((alone < full - 0.01).sum()):>11} {'-':>11} {'-':>10}")
    worst = sorted(rows, key=lambda r: r[0.1][0] - r[1.0][0])[:5]
    lines.append("largest drops at 10%: " + "; ".join(
        f"{r['name']} {r[1.0][0]:.3f} -> {r[0.1][0]:.3f}" for r in worst))
    print("\n".join(lines))
    with open(os.path.join(HERE, "results", "bench_pool_sample.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
