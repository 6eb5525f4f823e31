#!/usr/bin/env python
"""Seconds and peak memory of the default wrong-label score (``weighted_label_vote``'s ``fit_score``).

Not a test: prints a table and writes ``benchmarks/results/bench_label_votes.txt``.

Cases, each measured in a fresh Python process (its peak resident memory is the process's ``ru_maxrss``, the
embeddings included) with one thread (``OMP_NUM_THREADS=1`` and friends):

- ``fmnist``: the 8,000 real Fashion-MNIST embeddings of ``benchmarks/robustness.py`` (default backbone, all five
  levels pooled 2x2, 2,048 columns; cached by ``benchmarks/robust_data.py``), 10% of the labels changed
  uniformly at random (seed 0);
- ``clustered``: 50,000 synthetic 2,048-d rows in 100 Gaussian classes (centres N(0, 1), spread 2, seed 0; five
  levels of equal width), 10% of the labels changed uniformly at random.

Each case runs with the default (``lda_refit=True``) and the last release's single LDA (``lda_refit=False``);
AUROC (positive = a changed label) is printed so a speed change that alters the scores shows.

Usage::

    cd /work/main && PYTHONPATH=. .venv/bin/python benchmarks/bench_label_votes.py [fmnist] [clustered]
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "bench_label_votes.txt")
CASES = ("fmnist", "clustered")
NOISE = 0.10


def _data(case):
    import numpy as np

    if case == "fmnist":
        sys.path.insert(0, HERE)
        from robust_data import embed_source

        d = embed_source("fmnist")
        X, truth = d["X"], d["y"]
        dims = [int(b - a) for a, b in d["blocks"]]
    else:
        rng = np.random.default_rng(0)
        truth = rng.integers(0, 100, 50_000)
        centres = rng.normal(size=(100, 2048)).astype(np.float32)
        X = centres[truth] + 2.0 * rng.normal(size=(truth.size, 2048)).astype(np.float32)
        dims = [2048 // 5] * 4 + [2048 - 4 * (2048 // 5)]
    rng = np.random.default_rng(0)
    n_classes = int(truth.max()) + 1
    y = truth.copy()
    flip = rng.choice(y.size, int(NOISE * y.size), replace=False)
    y[flip] = (y[flip] + rng.integers(1, n_classes, flip.size)) % n_classes
    return X, y, y != truth, dims


def child(case, refit):
    """Runs in the measured process: prints one JSON line."""
    import resource

    from sklearn.metrics import roc_auc_score

    from ood_core.detectors import WeightedLabelVoteDetector

    X, y, wrong, dims = _data(case)
    det = WeightedLabelVoteDetector(level_dims=dims, levels="auto", lda_refit=refit)
    t0 = time.perf_counter()
    scores = det.fit_score(X, y)
    sec = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(json.dumps({"case": case, "refit": refit, "rows": int(y.size), "sec": sec, "peak_gb": peak_gb,
                      "auroc": float(roc_auc_score(wrong, scores))}))


def main(cases):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    lines = ["weighted_label_vote fit_score, one thread, 10% uniform wrong labels (positive = a changed label)",
             f"{'case':<10} {'rows':>7} {'lda_refit':>9} {'seconds':>8} {'peak GB':>8} {'AUROC':>7}"]
    print("\n".join(lines), flush=True)
    for case in cases:
        for refit in (True, False):
            out = subprocess.run([sys.executable, __file__, "--child", case, str(refit)], env=env,
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            lines.append(f"{case:<10} {r['rows']:>7} {str(refit):>9} {r['sec']:>8.1f} {r['peak_gb']:>8.2f} "
                         f"{r['auroc']:>7.4f}")
            print(lines[-1], flush=True)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3] == "True")
    else:
        unknown = set(sys.argv[1:]) - set(CASES)
        if unknown:
            sys.exit(f"unknown case(s) {sorted(unknown)}: choose from {CASES}")
        main(sys.argv[1:] or CASES)
