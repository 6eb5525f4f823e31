#!/usr/bin/env python
"""Held-out gain of ``auto_config`` over the default, on the robustness conditions (issue 10, item 5).

Not a test: prints a table and writes ``benchmarks/results/auto_config_robustness.txt``.

For every OOD condition of ``benchmarks/robustness.py`` that has a trusted
reference, the labelled test set is split (seeded, stratified by ID/OOD) into a
**validation** part (30%) and a **held-out** part (70%). ``auto_config``'s
search is replayed on the stored multi-level embeddings exactly as
``ood.auto_config`` runs it with its defaults: every contiguous run of the
stored pyramid levels x k in (1, 5, 10, 20), k-NN on L2-normalised rows, no
reduction; the configuration with the best validation AUROC wins (ties: the
first in table order). Reported on the held-out part only: the winner, the
product default (``pyramid_knn`` with the trusted labels, the scored-set
density ratio and the component gate, scoring the whole test set; it needs no
OOD labels at all) and the better of the two per condition.

This is what a user gains by labelling some OOD examples: the default
needs none. Positive class = OOD; AUROC.

Run::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/auto_config_robustness.py
"""

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.robustness import l2, load_sources, ood_conditions, run_pyramid  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

RESULTS = os.path.join(HERE, "results", "auto_config_robustness.txt")
KS = (1, 5, 10, 20)  # ood.auto_config's default k


def knn_scores(R, T, k):
    """Distance to the k-th nearest reference row (unit rows), as KNNDetector computes it."""
    D = np.sqrt(np.maximum(2.0 - 2.0 * (T @ R.T), 0.0))
    k = min(k, R.shape[0])
    return np.partition(D, k - 1, axis=1)[:, k - 1]


def contiguous_subsets(n_levels):
    return [list(range(i, j)) for i in range(n_levels) for j in range(i + 1, n_levels + 1)]


def split_validation(is_ood, seed):
    rng = np.random.default_rng(seed)
    val = np.zeros(is_ood.size, bool)
    for label in (False, True):
        rows = rng.permutation(np.flatnonzero(is_ood == label))
        val[rows[: max(1, int(round(0.3 * rows.size)))]] = True
    return val


def auroc(scores, positive):
    return ood_metrics(np.asarray(scores, np.float64), positive)["auroc"]


def main():
    t0 = time.time()
    sources = load_sources()
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out("auto_config held-out gain (positive = OOD; AUROC on the 70% of each test set not used for the choice)")
    out(f"search: every contiguous run of the 5 stored levels x k in {KS}, k-NN, no reduction (ood.auto_config "
        "defaults); default: the product default (pyramid_knn + density ratio + component gate, trusted labels, "
        "the whole test set scored; no OOD labels needed); a 'rare' condition: its first draw")
    rows = []
    for i, c in enumerate(ood_conditions(sources)):
        if c["X_ref"] is None:
            continue
        S = sources[c["source"]]
        val = split_validation(c["is_ood"], seed=i)
        held = ~val
        best, best_cfg = -1.0, None
        for subset in contiguous_subsets(len(S.slices)):
            cols = np.concatenate([np.arange(S.slices[j].start, S.slices[j].stop) for j in subset])
            R, T = l2(c["X_ref"][:, cols]), l2(c["X_test"][:, cols])
            for k in KS:
                s = knn_scores(R, T, k)
                a = auroc(s[val], c["is_ood"][val])
                if a > best:
                    best, best_cfg, best_scores = a, (subset, k), s
        chosen = auroc(best_scores[held], c["is_ood"][held])
        default = auroc(run_pyramid(c, slice(None), S.level_dims)[held], c["is_ood"][held])
        levels = "+".join(S.level_names[j] for j in best_cfg[0])
        rows.append((c["name"], c["group"], default, chosen, f"{levels} k={best_cfg[1]}"))
        out(f"  {c['name']:<50} default {default:.3f} | auto_config {chosen:.3f} ({levels}, k={best_cfg[1]}; "
            f"validation {best:.3f})")
    d = np.array([r[2] for r in rows])
    a = np.array([r[3] for r in rows])
    out("")
    out(f"{len(rows)} conditions with a trusted reference")
    out(f"  default:                      mean {d.mean():.3f}  worst {d.min():.3f}")
    out(f"  auto_config (30% labelled):   mean {a.mean():.3f}  worst {a.min():.3f}")
    out(f"  better of the two:            mean {np.maximum(a, d).mean():.3f}")
    out(f"  auto_config - default: mean {np.mean(a - d):+.3f}; auto_config better by > 0.02 in "
        f"{int(np.sum(a > d + 0.02))}, worse by > 0.02 in {int(np.sum(a < d - 0.02))}")
    for g in sorted({r[1] for r in rows}):
        sel = np.array([r[1] == g for r in rows])
        out(f"  [{g}] default {d[sel].mean():.3f} | auto_config {a[sel].mean():.3f}")
    out(f"wall time {time.time() - t0:.0f} s")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
