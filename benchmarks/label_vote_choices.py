#!/usr/bin/env python
"""The second vote, the margin weight and the LDA blend of ``WeightedLabelVoteDetector``, measured on the wrong-label conditions.

Not a test: prints a table and writes ``benchmarks/results/label_vote_choices.txt``.

Over the 46 wrong-label conditions of ``benchmarks/robustness.py`` (same
stored embeddings, same seeds; positive class = the label is wrong), the
default detector (``k_fraction=0.5``, ``levels="auto"``) is run with
``prune_suspects=False`` (the first vote only) and ``True`` (the product
default: first and second vote averaged); "second vote alone" is the second
vote's score without the average (recovered from the two runs' class
probabilities). The averaged votes are also scored with ``margin_weight`` w
in 0.1 / 0.2 / 0.3 / 0.5 / 1 (the strongest other class's vote in the score:
``(1 - p[label] + w * max other p) / (1 + w)``; the first three rows use w = 0),
and blended with out-of-fold shrinkage-LDA class probabilities
(``ood_core/detectors/lda.py``): 5 folds, untempered, ``lda_weight`` 0.25 /
0.5 / 0.75 / 1 (two releases before: 0.5 with w = 0.2); then the refinements
one by one (10 folds; a fitted temperature; both), the last release's default
(both, and the second vote's suspects judged by the first vote blended with
the LDA) and the product default (the same, the LDA averaged with a second
out-of-fold LDA fitted without Confident Learning's label issues,
``lda_refit=True``). AUROC mean and worst case (a condition with few wrong labels: the
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

from benchmarks.robustness import (  # noqa: E402
    RAW_RESULTS, blended_vote_scores, label_conditions, load_sources, vote_tie_term, voting_matrix,
)
from ood_core.detectors.label_votes import TIE_BREAK_WEIGHT, WeightedLabelVoteDetector, vote_score  # noqa: E402
from ood_core.detectors.lda import lda_probabilities  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

RESULTS = os.path.join(HERE, "results", "label_vote_choices.txt")
#: weights of the strongest other class's vote (``margin_weight``) measured on the averaged votes
MARGIN_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 1.0)
DEFAULT_MARGIN = WeightedLabelVoteDetector().margin_weight
#: weights of the out-of-fold LDA probabilities (``lda_weight``) blended into the averaged votes
LDA_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_LDA = WeightedLabelVoteDetector().lda_weight


def variants(cond, S):
    """name -> scores; and the shares of samples the first vote suspects and the default's refit leaves out."""
    X, y = cond["X"], cond["y"]
    first = WeightedLabelVoteDetector(k_fraction=0.5, level_dims=S.level_dims, levels="auto", prune_suspects=False,
                                      margin_weight=0.0, lda_weight=0.0)
    s_first = first.fit_score(X, y)
    det = WeightedLabelVoteDetector(k_fraction=0.5, level_dims=S.level_dims, levels="auto", margin_weight=0.0,
                                    lda_weight=0.0)
    s_two = det.fit_score(X, y)
    codes = det.codes_
    # the tie-breaker term is the same in every variant: the score minus its vote term
    tie = vote_tie_term(first, s_first)
    # the second vote alone = 2 * average - first
    second = 2 * det.class_probabilities_ - first.class_probabilities_
    out = {"first vote only (prune_suspects=False)": s_first, "first + second averaged": s_two,
           "second vote alone": (1 - TIE_BREAK_WEIGHT) * vote_score(second, codes, 0.0) + tie}
    for w in MARGIN_WEIGHTS:
        name = f"first + second, margin_weight={w:g}" + (" (three releases before)" if w == DEFAULT_MARGIN else "")
        out[name] = (1 - TIE_BREAK_WEIGHT) * vote_score(det.class_probabilities_, codes, w) + tie
    # out-of-fold shrinkage LDA on the voting levels, blended into the averaged votes: 5 folds, as they come
    Z, votes, n_cls = voting_matrix(det, X), det.class_probabilities_, len(det.classes_)
    lda, ok, _ = lda_probabilities(Z, codes, n_cls, folds=5, calibrate=False)
    for a in LDA_WEIGHTS:
        for w in (0.0, DEFAULT_MARGIN):
            name = f"votes + LDA, lda_weight={a:g}, margin_weight={w:g}" + (
                " (two releases before)" if (a, w) == (DEFAULT_LDA, DEFAULT_MARGIN) else "")
            out[name] = blended_vote_scores(votes, lda, ok, codes, tie, a, w)
    # the refinements one by one (lda_weight and margin_weight at their defaults)
    for label, folds, calibrate in (("10 folds", 10, False), ("tempered", 5, True), ("10 folds, tempered", 10, True)):
        lda, ok, _ = lda_probabilities(Z, codes, n_cls, folds=folds, calibrate=calibrate)
        out[f"votes + LDA .5, margin .2, {label}"] = blended_vote_scores(votes, lda, ok, codes, tie, DEFAULT_LDA,
                                                                          DEFAULT_MARGIN)
    last = WeightedLabelVoteDetector(level_dims=S.level_dims, levels="auto", lda_refit=False)
    out["10 folds, tempered, suspects judged with the LDA (last release)"] = last.fit_score(X, y)
    product = WeightedLabelVoteDetector(level_dims=S.level_dims, levels="auto")
    out["+ LDA refit without Confident Learning's issues (default)"] = product.fit_score(X, y)
    return out, (det.num_suspects_ / y.size, product.num_lda_issues_ / y.size)


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
                m = ood_metrics(s, d["is_wrong"])
                per_name.setdefault(name, []).append((m["auroc"], m["fpr95"]))
            shares.append(share)
        for name, v in per_name.items():
            res.setdefault(name, []).append(np.mean(v, axis=0))
        groups.append(c["group"])
        suspects.append(np.mean(shares, axis=0))
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
    out(f"{'variant':<56} {'mean':>6} {'worst':>6} {'FPR95':>6} {'loses':>6}  " + " ".join(f"{g:>16}" for g in gnames))
    for name, v in res.items():
        v, fpr = np.array(v)[:, 0], np.array(v)[:, 1]
        out(f"{name:<56} {v.mean():>6.4f} {v.min():>6.3f} {fpr.mean():>6.3f} {int(np.sum(v < oracle - 0.02)):>6}  "
            + " ".join(f"{v[G == g].mean():>16.4f}" for g in gnames))
    out(f"{'best anchor of each condition':<56} {oracle.mean():>6.4f} {oracle.min():>6.3f}")
    err = 1 - oracle.mean()
    for name, v in res.items():
        if "(default)" in name:
            e = 1 - np.array(v)[:, 0].mean()
            out(f"default's mean error {e:.4f} = {e / err:.2f}x the best anchor's {err:.4f} (the bar: <= 0.5x)")
    out(f"suspects of the first vote: mean {np.mean(suspects, axis=0)[0]:.3f} of the samples; left out of the "
        f"default's refitted LDA (Confident Learning's issues): {np.mean(suspects, axis=0)[1]:.3f} (wrong labels: "
        f"mean {np.mean(wrong):.3f})")
    out(f"wall time {time.time() - t0:.0f} s")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
