#!/usr/bin/env python
"""OOD scores when the trusted classes are imbalanced and the scored set is not (not a test: prints a table).

A curator rarely trusts the same number of images in every class. Here the
trusted reference holds the 6 in-distribution classes in very different numbers
(Fashion-MNIST 400 / 200 / 100 / 50 / 20 / 8 images, 8x8 digits 110 / 60 / 30 /
15 / 8 / 4, which class gets which size drawn per split), while the scored set
holds them equally (150 / 60 per class) plus the 4 held-out classes as OOD:

- 4 class splits per source (the 6 / 4 splits of ``benchmarks/robustness.py``);
- the reference clean, or 5% polluted by held-out-class images that carry
  in-distribution labels in proportion to the class sizes;
- OOD = 50% of the scored set, or only 3% (``RARE_DRAWS`` draws of the OOD
  images, metrics averaged over the draws).

Methods, on the embeddings of ``benchmarks/robustness.py`` (EfficientNet-Lite0,
5 levels pooled 2x2): the product default (``pyramid_knn``: each class at its own
rank, 5% of its size, plus the scored-set density ratio when its permutation
test fires and the class-mix gate lets it), the same without the gate
(``class_mix_gate=None``), each image on its own (``transductive="never"``),
the last release (5% of the *smallest* class for every class, ratio without the
gate) and that rank rule each image on its own, and the anchors of ``benchmarks/robustness.py`` (k-NN k=1 /
k=10 on the deepest level and on all levels, class-conditional Mahalanobis,
cleanlab ``OutOfDistribution``) on the same embeddings. Positive class = OOD.

Run (about 20 minutes on 2 cores, after the extraction of ``benchmarks/robustness.py``)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/imbalanced_reference.py
"""

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.robustness import (  # noqa: E402
    RARE_DRAWS, evaluate, load_sources, ood_methods, pollute, scored_rows, split_rows, summarize)
from ood_core.detectors.base import adaptive_k  # noqa: E402
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402

RESULTS = os.path.join(HERE, "results", "imbalanced_reference.txt")
#: reference images per in-distribution class (assigned to the classes at random per split)
PROFILES = {"fmnist": (400, 200, 100, 50, 20, 8), "digits": (110, 60, 30, 15, 8, 4)}
#: scored in-distribution images per class
N_TEST = {"fmnist": 150, "digits": 60}


def conditions(sources):
    for s in ("fmnist", "digits"):
        S = sources[s]
        for split in range(4):
            perm = np.random.default_rng(1000 * split + 7).permutation(10)  # robustness.py's 6 / 4 splits
            cin, cout = np.sort(perm[:6]), np.sort(perm[6:])
            sizes = np.random.default_rng(split).permutation(PROFILES[s])
            for poll in (0.0, 0.05):
                for frac in (None, 0.03):
                    rng = np.random.default_rng([split, int(poll * 100), 0 if frac is None else 3, 11])
                    test_id, ref = [], []
                    for c, n in zip(cin, sizes):
                        rows = rng.permutation(np.flatnonzero(S.y == c))
                        test_id.append(rows[:N_TEST[s]])
                        ref.append(rows[N_TEST[s]:N_TEST[s] + n])
                    test_id, ref = np.concatenate(test_id), np.concatenate(ref)
                    test_ood, _, pool = split_rows(rng, S.y, cout, N_TEST[s], 0)
                    # polluters' labels drawn from the trusted labels: in proportion to the class sizes
                    ref, y_ref = pollute(rng, ref, S.y[ref], pool, poll, labels=S.y[ref])
                    group = f"{'clean' if not poll else '5% polluted'} {'50%' if frac is None else '3%'} OOD"
                    name = (f"{s} split{split} in={''.join(map(str, cin))} sizes={'/'.join(map(str, sizes))} "
                            f"{group}")
                    cond = dict(name=name, group=group, source=s, X_ref=S.X[ref], y_ref=y_ref,
                                **scored_rows(S, test_id, test_ood), _S=S)
                    if frac is not None:
                        n_ood = max(2, int(round(frac * test_id.size)))
                        draws = [rng.choice(test_ood, n_ood, replace=False) for _ in range(RARE_DRAWS)]
                        cond.update(scored_rows(S, test_id, draws[0]))
                        cond["draws"] = [scored_rows(S, test_id, d) for d in draws]
                    yield cond


def _pyramid(cond, S, smallest_rank, transductive, class_mix_gate=0.25):
    k = "auto"
    if smallest_rank:
        _, counts = np.unique(cond["y_ref"], return_counts=True)
        k = adaptive_k(int(counts.min()), fraction=0.05)
    det = PyramidKNNDetector(level_dims=S.level_dims, k=k, transductive=transductive, class_mix_gate=class_mix_gate)
    return det.fit(cond["X_ref"], cond["y_ref"]).score_samples(cond["X_test"])


def methods(S):
    m = {
        "pyramid knn + weighted ratio": ("default", lambda c: _pyramid(c, S, False, "auto")),
        "pyramid knn + ratio, no class-mix gate": ("candidate", lambda c: _pyramid(c, S, False, "auto", None)),
        "pyramid knn (each image alone)": ("candidate", lambda c: _pyramid(c, S, False, "never")),
        "smallest-class k + ratio": ("previous", lambda c: _pyramid(c, S, True, "auto", None)),
        "smallest-class k (each alone)": ("candidate", lambda c: _pyramid(c, S, True, "never")),
    }
    m.update({name: (role, fn) for name, (role, fn) in ood_methods(S).items() if role == "anchor"})
    return m


def main():
    t0 = time.time()
    sources = load_sources(("fmnist", "digits", "foolbox"))
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out(__doc__.split("\n")[0])
    out("reference sizes per class: " + "; ".join(f"{s} {'/'.join(map(str, p))}" for s, p in PROFILES.items())
        + "; scored in-distribution images per class: " + ", ".join(f"{s} {n}" for s, n in N_TEST.items()))
    rows = evaluate(list(conditions(sources)), methods, label_task=False)
    verdicts, best_anchor, vals = summarize(rows, "OOD, imbalanced trusted classes (positive = OOD)", out)
    out("\nper condition (AUROC): default / without the class-mix gate / each image alone / previous rank rule + "
        "ratio / best anchor")
    for i, r in enumerate(rows):
        m = r["methods"]
        out(f"  {r['name']:<78} {m['pyramid knn + weighted ratio']['auroc']:.3f} "
            f"{m['pyramid knn + ratio, no class-mix gate']['auroc']:.3f} "
            f"{m['pyramid knn (each image alone)']['auroc']:.3f} {m['smallest-class k + ratio']['auroc']:.3f} "
            f"{best_anchor[i]:.3f}")
    out(f"\nwall time {time.time() - t0:.0f} s")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
