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
test fires; when the class-mix gate fires, against a draw of trusted images in
the scored set's class mix, unless its crowd check takes the extra images for
OOD images near a class: the per-condition lines say which), the same without the gate
(``class_mix_gate=None``: the whole reference), each image on its own
(``transductive="never"``; what the previous release did when the gate fired),
an earlier release (5% of the *smallest* class for every class, ratio without
the gate) and that rank rule each image on its own, and the anchors of ``benchmarks/robustness.py`` (k-NN k=1 /
k=10 on the deepest level and on all levels, class-conditional Mahalanobis,
cleanlab ``OutOfDistribution``) on the same embeddings. Positive class = OOD.

The second part (``--part mixed``, results in
``benchmarks/results/mixed_scored_classes.txt``) turns the question around: a
**balanced** trusted reference (Fashion-MNIST 100, digits 30 images per
class) scored against a set that holds the in-distribution classes in other
proportions, the usual case when a curator trusts a fixed number of images
per class of a dataset whose classes are not equally common: one class ten
times as common as each other one (``one10x``), half the classes twice as
common as the others (``2to1``, a mild mismatch), or a long tail (``tail``,
Fashion-MNIST 300 / 150 / 75 / 40 / 20 / 10). Same 4 class splits per source,
OOD = 50% or 3% of the scored set (held-out classes), no pollution; same
methods minus the last release's rank rule (on a balanced reference it is the
default's).

The third part (``--part small``, results in
``benchmarks/results/small_batches.txt``) checks that the class-mix gate does
not fire by chance on **small batches**: a balanced trusted reference
(Fashion-MNIST 100, digits 30 per class) and batches of 20 / 30 / 50 / 100
images drawn from a balanced scored pool, 50% or 10% OOD, 6 draws per
class split; a few dozen images hold the classes in uneven shares by
sampling alone.

Run (about 20, 16 and 7 minutes for the three parts, one core each, after the
extraction of ``benchmarks/robustness.py``)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/imbalanced_reference.py [--part imbalanced|mixed|small]
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.robustness import (  # noqa: E402
    RARE_DRAWS, class_split, evaluate, load_sources, ood_methods, pollute, scored_rows, split_rows, summarize)
from ood_core.detectors.base import adaptive_k  # noqa: E402
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

RESULTS = {"imbalanced": os.path.join(HERE, "results", "imbalanced_reference.txt"),
           "mixed": os.path.join(HERE, "results", "mixed_scored_classes.txt"),
           "small": os.path.join(HERE, "results", "small_batches.txt")}
#: reference images per in-distribution class (assigned to the classes at random per split)
PROFILES = {"fmnist": (400, 200, 100, 50, 20, 8), "digits": (110, 60, 30, 15, 8, 4)}
#: scored in-distribution images per class
N_TEST = {"fmnist": 150, "digits": 60}


def class_splits():
    """``(split, in-distribution classes, held-out classes)``: the first 4 splits of ``benchmarks/robustness.py``."""
    for split in range(4):
        yield (split, *class_split(split))


def _take_per_class(rng, y, classes, first, second):
    """Per class (in order), a seeded permutation of its rows: the first ``first[i]`` rows and the next
    ``second[i]``, each concatenated over the classes."""
    a, b = [], []
    for c, n1, n2 in zip(classes, first, second):
        rows = rng.permutation(np.flatnonzero(y == c))
        a.append(rows[:n1])
        b.append(rows[n1:n1 + n2])
    return np.concatenate(a), np.concatenate(b)


def _recorder():
    """``(lines, out)``: ``out(s)`` prints ``s`` and keeps it in ``lines`` (for the results file)."""
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)
    return lines, out


def conditions(sources):
    for s in ("fmnist", "digits"):
        S = sources[s]
        for split, cin, cout in class_splits():
            sizes = np.random.default_rng(split).permutation(PROFILES[s])
            for poll in (0.0, 0.05):
                for frac in (None, 0.03):
                    rng = np.random.default_rng([split, int(poll * 100), 0 if frac is None else 3, 11])
                    test_id, ref = _take_per_class(rng, S.y, cin, [N_TEST[s]] * len(cin), sizes)
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


#: second part: balanced trusted images per class, and the scored in-distribution images per class (6 classes,
#: assigned to the classes at random per split)
MIXED_REFERENCE = {"fmnist": 100, "digits": 30}
MIXES = {
    "fmnist": {"one10x": (300, 30, 30, 30, 30, 30), "2to1": (120, 120, 120, 60, 60, 60),
               "tail": (300, 150, 75, 40, 20, 10)},
    "digits": {"one10x": (100, 10, 10, 10, 10, 10), "2to1": (60, 60, 60, 30, 30, 30),
               "tail": (100, 60, 30, 15, 8, 4)},
}


def mixed_conditions(sources):
    """Balanced trusted reference, scored set with the in-distribution classes in other proportions."""
    for s in ("fmnist", "digits"):
        S = sources[s]
        for split, cin, cout in class_splits():
            for mix, profile in MIXES[s].items():
                sizes = np.random.default_rng(split + 50).permutation(profile)
                for frac in (None, 0.03):
                    rng = np.random.default_rng([split, len(mix), 0 if frac is None else 3, 17])
                    ref, test_id = _take_per_class(rng, S.y, cin, [MIXED_REFERENCE[s]] * len(cin), sizes)
                    n_ood = test_id.size if frac is None else max(2, int(round(frac * test_id.size)))
                    test_ood, _, pool = split_rows(rng, S.y, cout, n_ood // len(cout) + 1, 0)
                    test_ood = rng.permutation(test_ood)[:n_ood]
                    group = f"{mix} {'50%' if frac is None else '3%'} OOD"
                    name = f"{s} split{split} in={''.join(map(str, cin))} scored={'/'.join(map(str, sizes))} {group}"
                    cond = dict(name=name, group=group, source=s, X_ref=S.X[ref], y_ref=S.y[ref],
                                **scored_rows(S, test_id, test_ood), _S=S)
                    if frac is not None:
                        held_out = np.concatenate([test_ood, pool])
                        draws = [rng.choice(held_out, n_ood, replace=False) for _ in range(RARE_DRAWS)]
                        cond.update(scored_rows(S, test_id, draws[0]))
                        cond["draws"] = [scored_rows(S, test_id, d) for d in draws]
                    yield cond


def _pyramid(cond, S, smallest_rank, transductive, **options):
    """``options``: other ``PyramidKNNDetector`` arguments (e.g. ``class_mix_gate=None``); the rest are the
    product's defaults."""
    k = "auto"
    if smallest_rank:
        _, counts = np.unique(cond["y_ref"], return_counts=True)
        k = adaptive_k(int(counts.min()), fraction=0.05)
    det = PyramidKNNDetector(level_dims=S.level_dims, k=k, transductive=transductive, **options)
    return det.fit(cond["X_ref"], cond["y_ref"]).score_samples(cond["X_test"])


def methods(S, previous=True):
    m = {
        "pyramid knn + weighted ratio": ("default", lambda c: _pyramid(c, S, False, "auto")),
        "pyramid knn + ratio, no class-mix gate": ("candidate",
                                                   lambda c: _pyramid(c, S, False, "auto", class_mix_gate=None)),
        "pyramid knn (each image alone)": ("candidate", lambda c: _pyramid(c, S, False, "never")),
    }
    if previous:
        m["smallest-class k + ratio"] = ("previous", lambda c: _pyramid(c, S, True, "auto", class_mix_gate=None))
        m["smallest-class k (each alone)"] = ("candidate", lambda c: _pyramid(c, S, True, "never"))
    m.update({name: (role, fn) for name, (role, fn) in ood_methods(S).items() if role == "anchor"})
    return m


def _class_mix_record(cond):
    """The default's ``transductive_`` on the condition (the first draw when there are several)."""
    S = cond["_S"]
    det = PyramidKNNDetector(level_dims=S.level_dims).fit(cond["X_ref"], cond["y_ref"])
    det.score_samples(cond["X_test"])
    return det.transductive_


def _crowd_note(record):
    """When the gate's rule fired: the estimated OOD crowd, the excess without it and what the default did."""
    if record.get("class_mix_crowd") is None:
        return ""
    kind = "matched draw" if record["class_mix_reference"] is not None else "crowd, whole reference"
    return f"crowd {record['class_mix_crowd']} (excess without {record['class_mix_excess_without_crowd']:.3f}: {kind}) "


def run_part(part, sources):
    lines, out = _recorder()

    if part == "imbalanced":
        out(__doc__.split("\n")[0])
        out("reference sizes per class: " + "; ".join(f"{s} {'/'.join(map(str, p))}" for s, p in PROFILES.items())
            + "; scored in-distribution images per class: " + ", ".join(f"{s} {n}" for s, n in N_TEST.items()))
        conds, title, previous = list(conditions(sources)), "OOD, imbalanced trusted classes (positive = OOD)", True
    else:
        out("OOD scores when the trusted classes are balanced and the scored set holds them in other proportions "
            "(not a test: prints a table).")
        out("trusted images per class: " + ", ".join(f"{s} {n}" for s, n in MIXED_REFERENCE.items())
            + "; scored in-distribution images per class: " + "; ".join(
                f"{s} " + ", ".join(f"{m} {'/'.join(map(str, p))}" for m, p in mixes.items())
                for s, mixes in MIXES.items()))
        conds, title, previous = list(mixed_conditions(sources)), \
            "OOD, balanced trusted classes, other class mix scored (positive = OOD)", False
    records = [_class_mix_record(c) for c in conds]
    rows = evaluate(conds, lambda S: methods(S, previous), label_task=False)
    verdicts, best_anchor, vals = summarize(rows, title, out)
    out("\nper condition (AUROC): default / without the class-mix gate / each image alone"
        + (" / previous rank rule + ratio" if previous else "") + " / best anchor; the default's class-mix shift "
        "and the part of it expected by chance (first draw), and whether it used the density ratio")
    for i, r in enumerate(rows):
        m = r["methods"]
        shift = records[i].get("class_mix_shift")
        out(f"  {r['name']:<78} {m['pyramid knn + weighted ratio']['auroc']:.3f} "
            f"{m['pyramid knn + ratio, no class-mix gate']['auroc']:.3f} "
            f"{m['pyramid knn (each image alone)']['auroc']:.3f} "
            + (f"{m['smallest-class k + ratio']['auroc']:.3f} " if previous else "")
            + f"{best_anchor[i]:.3f}  shift "
            + ("-" if shift is None else f"{shift:.3f} (chance {records[i]['class_mix_chance']:.3f})") + " "
            + _crowd_note(records[i]) + f"{'ratio used' if records[i]['used'] else 'alone'}")
    return lines


SMALL_BATCHES = (20, 30, 50, 100)
SMALL_OOD = (0.5, 0.1)
SMALL_DRAWS = 6


def run_small(sources):
    """Part 3: per source, batch size and OOD share, the mean AUROC over 4 splits x ``SMALL_DRAWS`` batches."""
    lines, out = _recorder()

    out("The class-mix gate on small batches: balanced trusted classes, batches drawn from a balanced pool "
        "(not a test: prints a table).")
    out("trusted images per class: " + ", ".join(f"{s} {n}" for s, n in MIXED_REFERENCE.items())
        + f"; {SMALL_DRAWS} batches per class split and cell; positive = OOD")
    cells = {}
    for s in ("fmnist", "digits"):
        S = sources[s]
        for split, cin, cout in class_splits():
            rng = np.random.default_rng([split, 98])
            test_id, ref, _ = split_rows(rng, S.y, cin, 150, MIXED_REFERENCE[s])
            test_ood, _, _ = split_rows(rng, S.y, cout, 150, 0)
            dets = {name: PyramidKNNDetector(level_dims=S.level_dims, **options).fit(S.X[ref], S.y[ref])
                    for name, options in (("default", {}), ("no gate", {"class_mix_gate": None}),
                                          ("alone", {"transductive": "never"}))}
            for n in SMALL_BATCHES:
                for frac in SMALL_OOD:
                    for _ in range(SMALL_DRAWS):
                        n_ood = int(round(frac * n))
                        rows = np.r_[rng.choice(test_id, n - n_ood, replace=False),
                                     rng.choice(test_ood, n_ood, replace=False)]
                        is_ood = np.r_[np.zeros(n - n_ood, bool), np.ones(n_ood, bool)]
                        cell = cells.setdefault((s, n, frac), {"fired": 0, "crowd": 0, **{name: [] for name in dets}})
                        for name, det in dets.items():
                            cell[name].append(ood_metrics(det.score_samples(S.X[rows]), is_ood)["auroc"])
                        info = dets["default"].transductive_
                        cell["fired"] += info["class_mix_reference"] is not None
                        cell["crowd"] += info["class_mix_crowd"] is not None and info["class_mix_reference"] is None
    out(f"\n{'source':<8}{'batch':>6}{'OOD':>6}   default  no gate    alone   gate fired   taken for an OOD crowd")
    for (s, n, frac), cell in cells.items():
        means = "  ".join(f"{np.mean(cell[m]):7.3f}" for m in ("default", "no gate", "alone"))
        out(f"{s:<8}{n:>6}{frac:>6.0%}   {means}   {cell['fired']:>3} of {len(cell['default'])}"
            f"   {cell['crowd']:>3}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("imbalanced", "mixed", "small", "all"), default="all")
    args = ap.parse_args()
    sources = load_sources(("fmnist", "digits", "foolbox"))
    for part in (("imbalanced", "mixed", "small") if args.part == "all" else (args.part,)):
        t0 = time.time()
        lines = run_small(sources) if part == "small" else run_part(part, sources)
        lines.append(f"\nwall time {time.time() - t0:.0f} s")
        print(lines[-1], flush=True)
        os.makedirs(os.path.dirname(RESULTS[part]), exist_ok=True)
        with open(RESULTS[part], "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
