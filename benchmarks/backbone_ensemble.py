#!/usr/bin/env python
"""Bundled backbones and their ensembles under the default detectors (issue 10, candidate "ensemble").

Not a test: prints a table and writes ``benchmarks/results/backbone_ensemble.txt``.

The conditions of ``benchmarks/robustness.py`` are generated once per bundled
backbone from the same images, rows and seeds: on EfficientNet-Lite0, Lite1
and Lite2 embeddings (all three bundled offline; every level pooled 2x2, the
product default).

- OOD (positive = OOD): each backbone scored with the product's default
  detector exactly as the study's default row runs it (``PyramidKNNDetector``
  defaults with the trusted labels: the per-level k-NN max plus the scored-set
  density ratio, weighted by the permutation test's effect, when the test lets
  it in; ``robustness.run_pyramid`` with no overrides). The ensembles are the
  mean or the maximum of the per-backbone final scores (all three, and the
  mean of Lite0 with each other one).
- Wrong labels (positive = label is wrong): each backbone scored with the
  default ``weighted_label_vote`` (``WeightedLabelVoteDetector(level_dims=...,
  levels="auto")`` with its own defaults, the study's default row); the
  ensembles combine the per-backbone scores the same way.

AUROC; a condition with several draws (rare OOD, few wrong labels) reports
the first draw. Under each table: how often a row is better / worse than Lite0
by more than 0.02, and the study's "losses" (below the best anchor by more than
0.02), the anchors being Lite0's as recorded in ``results/robustness_raw.json``
(first draw).

Run (each backbone's embeddings are extracted once: measured 6.3 minutes for Lite1 and 7.5 minutes for
Lite2 on 2 cores; then the benchmark, measured 35 minutes on 2 cores shared with another job)::

    OOD_BENCH_BACKBONE=tf_efficientnet_lite1 PYTHONPATH=. .venv/bin/python benchmarks/robust_data.py
    OOD_BENCH_BACKBONE=tf_efficientnet_lite2 PYTHONPATH=. .venv/bin/python benchmarks/robust_data.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/backbone_ensemble.py
"""

import importlib
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

RESULTS = os.path.join(HERE, "results", "backbone_ensemble.txt")
#: the robustness study's per-condition metrics (Lite0): its anchors give the "losses" bar
RAW_RESULTS = os.path.join(HERE, "results", "robustness_raw.json")
BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
SHORT = {b: "Lite" + b[-1] for b in BACKBONES}


def conditions_for(backbone):
    """The robustness conditions (OOD, wrong labels) on one backbone's cached embeddings, with their sources."""
    os.environ["OOD_BENCH_BACKBONE"] = backbone
    import benchmarks.robust_data as data
    import benchmarks.robustness as rob

    importlib.reload(data)
    importlib.reload(rob)
    sources = rob.load_sources()
    ood = [(c, sources[c["source"]]) for c in rob.ood_conditions(sources)]
    label = [(c, sources[c["source"]]) for c in rob.label_conditions(sources)]
    return ood, label


def default_ood_scores(cond, S):
    from benchmarks.robustness import run_pyramid

    # the product default, as robustness.py's DEFAULT_OOD row runs it (density ratio included when the test lets it in)
    return run_pyramid(cond, slice(None), S.level_dims)


def default_label_scores(cond, S):
    from ood_core.detectors.label_votes import WeightedLabelVoteDetector

    # as the product runs it on multi-level embeddings (ood_core.fo.scores.score_arrays: levels="auto"), and as
    # robustness.py's DEFAULT_LABEL row runs it
    return WeightedLabelVoteDetector(level_dims=S.level_dims, levels="auto").fit_score(cond["X"], cond["y"])


def ensembles(scores):
    """name -> scores: each backbone, the mean and max of all, and Lite0 with each other one."""
    names = list(scores)
    out = dict(scores)
    out["mean(all)"] = np.mean([scores[n] for n in names], axis=0)
    out["max(all)"] = np.max([scores[n] for n in names], axis=0)
    for n in names[1:]:
        out[f"mean({names[0]}, {n})"] = (scores[names[0]] + scores[n]) / 2
    return out


def anchor_oracle(task, names):
    """Per condition, the best anchor's AUROC on Lite0 (first draw) from the robustness study's raw results, or
    None when they do not cover these conditions."""
    try:
        with open(RAW_RESULTS) as f:
            raw = {r["name"]: r["methods"] for r in json.load(f)[task]}
    except (OSError, ValueError, KeyError):
        return None
    if any(n not in raw for n in names):
        return None

    def first(m):
        return m.get("auroc_draws", [m["auroc"]])[0] if "auroc" in m else np.nan

    return np.array([np.nanmax([first(m) for m in raw[n].values() if m.get("role") == "anchor"]) for n in names])


def table(rows, title, out, oracle=None):
    groups = sorted({g for _, g, _ in rows})
    out(title)
    out(f"{'backbone':<22} {'mean':>6} {'worst':>6}  " + " ".join(f"{g[:12]:>12}" for g in groups))
    for name in rows[0][2]:
        a = np.array([r[2][name] for r in rows])
        out(f"{name:<22} {a.mean():>6.3f} {a.min():>6.3f}  " + " ".join(
            f"{a[[r[1] == g for r in rows]].mean():>12.3f}" for g in groups))
    first = list(rows[0][2])[0]
    a0 = np.array([r[2][first] for r in rows])
    for name in list(rows[0][2])[1:]:
        a = np.array([r[2][name] for r in rows])
        out(f"  {name} vs {first}: better by > 0.02 in {int(np.sum(a > a0 + 0.02))}, worse by > 0.02 in "
            f"{int(np.sum(a < a0 - 0.02))} of {len(rows)}")
    if oracle is None:
        out("  (no losses: results/robustness_raw.json does not cover these conditions)")
        return
    out("  losses (below the best anchor of the robustness study, Lite0 embeddings, first draw, by > 0.02): " + ", ".join(
        f"{name} {int(np.sum(np.array([r[2][name] for r in rows]) < oracle - 0.02))}" for name in rows[0][2])
        + f" of {len(rows)}")


def main():
    from ood_core.metrics import ood_metrics

    try:
        import faiss

        faiss.omp_set_num_threads(1)  # as robustness.py
    except ImportError:
        pass
    t0 = time.time()
    per_backbone = {SHORT[b]: conditions_for(b) for b in BACKBONES}
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    for task, scorer, truth in ((0, default_ood_scores, "is_ood"), (1, default_label_scores, "is_wrong")):
        rows = []
        for conds in zip(*(per_backbone[n][task] for n in per_backbone)):
            c0 = conds[0][0]
            assert all(c["name"] == c0["name"] and np.array_equal(c[truth], c0[truth]) for c, _ in conds)
            scores = ensembles({n: scorer(c, S) for n, (c, S) in zip(per_backbone, conds)})
            rows.append((c0["name"], c0["group"], {n: ood_metrics(s, c0[truth])["auroc"] for n, s in scores.items()}))
        oracle = anchor_oracle(("ood", "label")[task], [r[0] for r in rows])
        if task == 0:
            table(rows, f"default OOD detector (pyramid_knn defaults, trusted labels, scored-set density ratio when "
                        f"the test lets it in) on each bundled backbone; ensembles = mean / max of the per-backbone "
                        f"final scores; {len(rows)} OOD conditions, first draw (positive = OOD, AUROC)", out, oracle)
        else:
            out()
            table(rows, f"default wrong-label detector (weighted_label_vote defaults, levels=auto) on each bundled "
                        f"backbone; ensembles = mean / max of the per-backbone scores; {len(rows)} wrong-label "
                        f"conditions, first draw (positive = label is wrong, AUROC)", out, oracle)
    out(f"wall time {time.time() - t0:.0f} s")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
