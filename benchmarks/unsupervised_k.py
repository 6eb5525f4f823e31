#!/usr/bin/env python
"""The neighbour rank of ``pyramid_knn`` when a set scores itself (no trusted reference).

Not a test: prints a table and writes ``benchmarks/results/unsupervised_k.txt``.

Without a trusted tag the audit scores the dataset against itself
(``PyramidKNNDetector.fit_score``), with the dataset's own labels when a
label field is given. The OOD images are then *inside* the set: images of a
class that does not belong arrive together and carry in-distribution labels
(at random, or all as the most similar class), so inside a labelled class
they form a clump. Read at 5% of the class (the rank chosen for a trusted
reference) a clump member's k-th neighbour is often another member and the
clump looks typical; a wider rank reaches past the clump.

Conditions: the design of ``heldout_check.unsupervised_conditions``
(Fashion-MNIST and 8x8 digits 5 classes in, the natural-object stamps 4 in,
four class splits per source, 15-300 images per class, every image of the set
scored) drawn with three seeds that the held-out check does not use: 4242 and
777 with OOD images numbering 10 / 30% of the in-distribution ones, 31337 with
3 / 20 / 50%; 336 conditions.
The held-out check (seed 90210, 10 / 30%) is the confirmation, run separately.

Rows: ``pyramid_knn`` with the set's own labels at ``unsupervised_class_k_fraction``
0.05 (the trusted-reference rank) ... 0.3, and without labels at
``k_fraction`` 0.02 (the default) / 0.03 / 0.05, each through the product's
detector; and the robustness study's anchors scoring the set the same way.
AUROC (positive = OOD): mean, worst, conditions more than 0.02 below the best
anchor of the condition, mean error relative to that best anchor's, and means
per seed and per OOD share.

A second table asks what the wider rank costs when a labelled class is
itself several kinds of image in unequal shares (a "dog" class of many
breeds): Fashion-MNIST classes merged into labels with sub-modes of 5-55% of
the label (three designs, 100 / 300 images per label, 0 / 5 / 10 / 30% OOD
images labelled at random, 3 draws). Per rank: mean / worst AUROC over the
sets with OOD images, and the share of in-distribution images of a minority
sub-mode (and of a majority one) among the top 5% of the scores (the audit's
flag rule without trusted samples; 5% would mean "flagged like any image").

Run (after ``robustness.py`` or any run that cached the embeddings; 11 minutes on 2 cores)::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/unsupervised_k.py
"""

import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.heldout_check import unsupervised_conditions  # noqa: E402
from benchmarks.robustness import load_sources, ood_methods  # noqa: E402
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

RESULTS = os.path.join(HERE, "results", "unsupervised_k.txt")
#: seed -> OOD shares of the set
TUNING = {4242: (0.1, 0.3), 777: (0.1, 0.3), 31337: (0.03, 0.2, 0.5)}
CLASS_FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
GLOBAL_FRACTIONS = (0.02, 0.03, 0.05)


def methods(S):
    """name -> fn(cond) of every row: the labelled and unlabelled self-scoring ranks, then the anchors."""
    m = {}
    for f in CLASS_FRACTIONS:
        m[f"own labels, {f:g} of each class"] = lambda c, f=f: PyramidKNNDetector(
            level_dims=S.level_dims, unsupervised_class_k_fraction=f).fit_score(c["X_test"], c["y_test"])
    for f in GLOBAL_FRACTIONS:
        m[f"no labels, {f:g} of the set"] = lambda c, f=f: PyramidKNNDetector(
            level_dims=S.level_dims, k_fraction=f).fit_score(c["X_test"])
    anchors = {n: fn for n, (role, fn) in ood_methods(S).items() if role == "anchor"}
    return m, anchors


#: merged Fashion-MNIST classes (0 T-shirt, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
#: 8 Bag, 9 Ankle boot): name -> ({label: {class: share of the label}}, OOD classes)
SUBMODE_DESIGNS = {
    "tops+shoes": ({"top": {0: .55, 2: .2, 4: .15, 6: .10}, "shoe": {7: .8, 5: .2}, "trouser": {1: 1.0}}, (3, 8, 9)),
    "tops+bags": ({"top": {0: .7, 6: .2, 3: .1}, "bag": {8: .85, 9: .15}, "trouser": {1: 1.0}, "sneaker": {7: 1.0}},
                  (2, 4, 5)),
    "wear+shoes": ({"wear": {0: .4, 2: .25, 1: .2, 3: .1, 4: .05}, "shoe": {9: .6, 7: .3, 5: .1}}, (6, 8)),
}
SUBMODE_FRACTIONS = (0.05, 0.1, 0.15, 0.2)


def submode_sets(S):
    """Yield ``(X, labels, is_ood, minority)`` of the merged-class designs (module docstring)."""
    for name, (labels, ood_classes) in SUBMODE_DESIGNS.items():
        for n_label in (100, 300):
            for ood_share in (0.0, 0.05, 0.1, 0.3):
                for draw in range(3):
                    rng = np.random.default_rng([draw, n_label, int(ood_share * 100), len(name)])
                    rows, y, minority = [], [], []
                    for label, parts in labels.items():
                        for c, share in parts.items():
                            pick = rng.choice(np.flatnonzero(S.y == c), max(1, round(share * n_label)), replace=False)
                            rows += list(pick)
                            y += [label] * pick.size
                            minority += [share < max(parts.values())] * pick.size
                    n_ood = round(ood_share * len(rows))
                    if n_ood:
                        rows += list(rng.choice(np.flatnonzero(np.isin(S.y, ood_classes)), n_ood, replace=False))
                        y += list(rng.choice(list(labels), n_ood))  # labelled at random
                        minority += [False] * n_ood
                    is_ood = np.r_[np.zeros(len(rows) - n_ood, bool), np.ones(n_ood, bool)]
                    yield S.X[rows], np.array(y, dtype=object), is_ood, np.array(minority)


def submode_table(S, out):
    got = {f: {"auroc": [], "minority": [], "majority": []} for f in SUBMODE_FRACTIONS}
    for X, y, is_ood, minority in submode_sets(S):
        for f in SUBMODE_FRACTIONS:
            s = PyramidKNNDetector(level_dims=S.level_dims, unsupervised_class_k_fraction=f).fit_score(X, y)
            top = s >= np.quantile(s, 0.95)
            if is_ood.any():
                got[f]["auroc"].append(ood_metrics(s, is_ood)["auroc"])
            got[f]["minority"].append(top[minority].mean())
            got[f]["majority"].append(top[~minority & ~is_ood].mean())
    n = len(got[SUBMODE_FRACTIONS[0]]["minority"])
    out()
    out(f"labels made of unequal sub-modes (merged Fashion-MNIST classes), {n} sets; AUROC over the sets with OOD "
        "images (positive = OOD); share of in-distribution images among the top 5% of the scores")
    out(f"{'own labels, rank':<22} {'mean':>6} {'worst':>6}  {'minority sub-mode':>17}  {'majority sub-mode':>17}")
    for f, g in got.items():
        out(f"{f'{f:g} of each class':<22} {np.mean(g['auroc']):>6.3f} {np.min(g['auroc']):>6.3f}  "
            f"{np.mean(g['minority']):>17.3f}  {np.mean(g['majority']):>17.3f}")


def main():
    t0 = time.time()
    sources = load_sources(("fmnist", "digits", "stamps"))
    res, best, seeds, shares = {}, [], [], []
    for seed, fractions in TUNING.items():
        for S, cond in unsupervised_conditions(sources, seed=seed, fractions=fractions):
            rows, anchors = methods(S)
            for name, fn in rows.items():
                res.setdefault(name, []).append(ood_metrics(fn(cond), cond["is_ood"])["auroc"])
            got = []
            for name, fn in anchors.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = fn(cond)
                if s is not None:  # Mahalanobis needs a reference
                    got.append(ood_metrics(s, cond["is_ood"])["auroc"])
                    res.setdefault("anchor " + name, []).append(got[-1])
            best.append(max(got))
            seeds.append(seed)
            shares.append(round(100 * cond["ood_fraction"]))  # OOD images: this % of the ID count
    best, seeds = np.array(best), np.array(seeds)
    shares = np.array(shares)
    share_names = sorted(set(shares.tolist()))
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out(f"pyramid_knn scoring a set against itself (no trusted reference), {best.size} conditions; AUROC, "
        "positive = OOD; 'loses' = more than 0.02 below the best anchor of the condition")
    out(f"{'row':<34} {'mean':>6} {'worst':>6} {'loses':>6} {'err/best':>8}  "
        + " ".join(f"{'seed ' + str(s):>10}" for s in TUNING) + "  " + " ".join(
            f"{'+' + str(f) + '% OOD':>9}" for f in share_names))
    for name, v in res.items():
        v = np.array(v)
        ratio = (1 - v).mean() / (1 - best).mean()
        by_share = [v[shares == f].mean() for f in share_names]
        out(f"{name:<34} {v.mean():>6.3f} {v.min():>6.3f} {int(np.sum(v < best - 0.02)):>6} {ratio:>8.2f}  "
            + " ".join(f"{v[seeds == s].mean():>10.3f}" for s in TUNING) + "  "
            + " ".join(f"{x:>9.3f}" for x in by_share))
    out(f"best anchor of each condition: mean {best.mean():.3f}, worst {best.min():.3f}")
    submode_table(sources["fmnist"], out)
    out(f"wall time {time.time() - t0:.0f} s")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
