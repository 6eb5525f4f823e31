#!/usr/bin/env python
"""Bundled backbones and their ensemble under the default OOD detector (issue 10, candidate "ensemble").

Not a test: prints a table and writes ``benchmarks/results/backbone_ensemble.txt``.

The OOD conditions of ``benchmarks/robustness.py`` are generated twice from
the same images, rows and seeds: once on EfficientNet-Lite0 embeddings, once
on EfficientNet-Lite2 embeddings (both bundled offline; every level pooled
2x2, the product default). Each backbone is scored with ``pyramid_knn`` and
the trusted labels (the default); the ensembles combine the two fused scores,
which are z-scores against each backbone's own reference, by their mean or
their maximum. Positive class = OOD; AUROC.

Run (the Lite2 embeddings are extracted once, about 10 minutes on 2 cores)::

    OOD_BENCH_BACKBONE=tf_efficientnet_lite2 PYTHONPATH=. .venv/bin/python benchmarks/robust_data.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/backbone_ensemble.py
"""

import importlib
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

RESULTS = os.path.join(HERE, "results", "backbone_ensemble.txt")
BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite2")


def conditions_for(backbone):
    """The robustness conditions on one backbone's cached embeddings (with their sources)."""
    os.environ["OOD_BENCH_BACKBONE"] = backbone
    import benchmarks.robust_data as data
    import benchmarks.robustness as rob

    importlib.reload(data)
    importlib.reload(rob)
    fm, dg, fb, pt = (rob.Source(s) for s in ("fmnist", "digits", "foolbox", "patches"))
    sources = {"fmnist": fm, "digits": dg, "patches": pt}
    return [(c, sources.get(c["source"], fm)) for c in rob.ood_conditions(fm, dg, fb, pt)]


def default_scores(cond, S):
    from benchmarks.robustness import run_pyramid  # the default detector, as robustness.py runs it

    return run_pyramid(cond, slice(None), S.level_dims)


def main():
    from ood_core.metrics import ood_metrics

    t0 = time.time()
    per_backbone = [conditions_for(b) for b in BACKBONES]
    rows = []
    for (c0, S0), (c2, S2) in zip(*per_backbone):
        assert c0["name"] == c2["name"] and np.array_equal(c0["is_ood"], c2["is_ood"])
        s0, s2 = default_scores(c0, S0), default_scores(c2, S2)
        scores = {"Lite0": s0, "Lite2": s2, "mean(Lite0, Lite2)": (s0 + s2) / 2, "max(Lite0, Lite2)": np.maximum(s0, s2)}
        rows.append((c0["name"], c0["group"], {n: ood_metrics(s, c0["is_ood"])["auroc"] for n, s in scores.items()}))
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    groups = sorted({g for _, g, _ in rows})
    out(f"default OOD detector (pyramid_knn, trusted labels) on each bundled backbone and their ensembles; "
        f"{len(rows)} OOD conditions of benchmarks/robustness.py (positive = OOD, AUROC)")
    out(f"{'backbone':<22} {'mean':>6} {'worst':>6}  " + " ".join(f"{g[:12]:>12}" for g in groups))
    for name in rows[0][2]:
        a = np.array([r[2][name] for r in rows])
        out(f"{name:<22} {a.mean():>6.3f} {a.min():>6.3f}  " + " ".join(
            f"{a[[r[1] == g for r in rows]].mean():>12.3f}" for g in groups))
    a0 = np.array([r[2]["Lite0"] for r in rows])
    for name in ("Lite2", "mean(Lite0, Lite2)"):
        a = np.array([r[2][name] for r in rows])
        out(f"{name} vs Lite0: better by > 0.02 in {int(np.sum(a > a0 + 0.02))}, worse by > 0.02 in "
            f"{int(np.sum(a < a0 - 0.02))} of {len(rows)}")
    out(f"wall time {time.time() - t0:.0f} s")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
