#!/usr/bin/env python
"""The second vote without suspects (``WeightedLabelVoteDetector(prune_suspects=...)``), measured on the wrong-label conditions.

Not a test: prints a table and writes ``benchmarks/results/label_vote_choices.txt``.

Over the 46 wrong-label conditions of ``benchmarks/robustness.py`` (same
stored embeddings, same seeds; positive class = the label is wrong), the
default detector (``k_fraction=0.5``, ``levels="auto"``) is run with
``prune_suspects=False`` (the first vote only) and ``True`` (the product
default: first and second vote averaged); "second vote alone" is the second
vote's score without the average (recovered from the two runs' class
probabilities). AUROC mean and worst case (a condition with few wrong labels: the
mean over its draws of which labels are wrong), mean per group, and losses
(> 0.02 below the per-condition best anchor recorded in
``results/robustness_raw.json``; run ``robustness.py`` first).

Run::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/label_vote_choices.py
"""

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.robustness import RAW_RESULTS, label_conditions, load_sources  # noqa: E402
from ood_core.detectors.label_votes import TIE_BREAK_WEIGHT, WeightedLabelVoteDetector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

RESULTS = os.path.join(HERE, "results", "label_vote_choices.txt")


def variants(cond, S):
    """name -> scores; and the share of samples the first vote suspects."""
    X, y = cond["X"], cond["y"]
    first = WeightedLabelVoteDetector(k_fraction=0.5, level_dims=S.level_dims, levels="auto", prune_suspects=False)
    s_first = first.fit_score(X, y)
    det = WeightedLabelVoteDetector(k_fraction=0.5, level_dims=S.level_dims, levels="auto")
    s_default = det.fit_score(X, y)
    rows = np.arange(y.size)
    # the tie-breaker term is the same in both runs; the second vote alone = 2 * average - first
    second = 2 * det.class_probabilities_ - first.class_probabilities_
    tie = s_first - (1 - TIE_BREAK_WEIGHT) * (1 - first.class_probabilities_[rows, y])
    s_second = (1 - TIE_BREAK_WEIGHT) * (1 - second[rows, y]) + tie
    out = {"first vote only (prune_suspects=False)": s_first, "first + second averaged (default)": s_default,
           "second vote alone": s_second}
    return out, det.num_suspects_ / y.size


def main():
    t0 = time.time()
    sources = load_sources(("fmnist", "digits", "stamps"))
    with open(RAW_RESULTS) as f:
        raw = {r["name"]: r["methods"] for r in json.load(f)["label"]}
    res, groups, oracle, suspects, wrong = {}, [], [], [], []
    for c in label_conditions(sources):
        per_name, shares = {}, []
        for draw in c.get("draws") or [{}]:  # few wrong labels: the mean over the draws of which are wrong
            d = {**c, **draw}
            scores, share = variants(d, sources[c["source"]])
            for name, s in scores.items():
                per_name.setdefault(name, []).append(ood_metrics(s, d["is_wrong"])["auroc"])
            shares.append(share)
        for name, v in per_name.items():
            res.setdefault(name, []).append(float(np.mean(v)))
        groups.append(c["group"])
        suspects.append(float(np.mean(shares)))
        wrong.append(c["is_wrong"].mean())
        oracle.append(max(v["auroc"] for v in raw[c["name"]].values() if v.get("role") == "anchor"))
    oracle, G = np.array(oracle), np.array(groups)
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out(f"wrong-label votes over {len(groups)} conditions (positive = the label is wrong, AUROC); 'loses' = more "
        "than 0.02 below the best anchor of the condition (robustness_raw.json)")
    gnames = sorted(set(groups))
    out(f"{'variant':<42} {'mean':>6} {'worst':>6} {'loses':>6}  " + " ".join(f"{g:>16}" for g in gnames))
    for name, v in res.items():
        v = np.array(v)
        out(f"{name:<42} {v.mean():>6.4f} {v.min():>6.3f} {int(np.sum(v < oracle - 0.02)):>6}  "
            + " ".join(f"{v[G == g].mean():>16.4f}" for g in gnames))
    out(f"{'best anchor of each condition':<42} {oracle.mean():>6.4f} {oracle.min():>6.3f}")
    out(f"suspects of the first vote: mean {np.mean(suspects):.3f} of the samples (wrong labels: mean "
        f"{np.mean(wrong):.3f})")
    out(f"wall time {time.time() - t0:.0f} s")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
