#!/usr/bin/env python
"""Benchmark: the per-class neighbour search of the default detector, ``pyramid_knn``.

``PyramidKNNDetector`` needs, for every scored image and every trusted class,
the distance to that class's k-th nearest trusted image (k = 5% of the class),
and the same for every trusted image against every class (leave-one-out, at
fit). With many small classes one index search per class and batch of
queries costs more in overhead and float64 re-ranking (``k + 8`` candidates
gathered per query, see ``ood_core/neighbors.py``) than the distances
themselves. ``ood_core.neighbors.group_kth_distances`` instead multiplies each
chunk of queries with each class's rows in float64; the detector uses it for
classes of at most ``GEMM_GROUP_ROWS`` trusted images (``index="flat"``).

For each layout (classes x images per class) this times ``fit`` and
``score_samples`` (``transductive="never"``, so only the per-class search is
measured; 2 components, 1280 + 2048 columns as in the product's default
embedding) with the threshold forced to 0 (every class through its own
``NeighborIndex``) and to infinity (every class through the matrix
products), and prints the largest difference between the two sets of scores.
Data: seeded Gaussian class clusters (the timing does not depend on the
values). Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_group_knn.py            # writes benchmarks/results/bench_group_knn.txt
"""

import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ood_core.detectors import pyramid_knn  # noqa: E402
from ood_core.detectors.base import adaptive_k  # noqa: E402
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402

LEVELS = [64, 96, 160, 448, 1280]  # tf_efficientnet_lite0, 5 levels pooled 2x2: 2048 columns
LAYOUTS = [(6, 100), (6, 600), (10, 1000), (6, 3000), (50, 60), (200, 50), (400, 20)]
QUERIES = 3000
RESULTS = os.path.join(HERE, "results", "bench_group_knn.txt")


def data(classes, per_class, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, sum(LEVELS)))
    y = np.repeat(np.arange(classes), per_class)
    X = (centres[y] + 2.0 * rng.normal(size=(y.size, sum(LEVELS)))).astype(np.float32)
    yq = rng.integers(0, classes, QUERIES)
    Q = (centres[yq] + 2.0 * rng.normal(size=(QUERIES, sum(LEVELS)))).astype(np.float32)
    return X, y.astype(str), Q


def timed(rows_limit, X, y, Q):
    pyramid_knn.GEMM_GROUP_ROWS = rows_limit
    det = PyramidKNNDetector(level_dims=LEVELS, transductive="never")
    t0 = time.perf_counter()
    det.fit(X, y)
    t1 = time.perf_counter()
    scores = det.score_samples(Q)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, scores, det.reference_scores_


def main():
    default = pyramid_knn.GEMM_GROUP_ROWS
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out(f"# Command: .venv/bin/python benchmarks/bench_group_knn.py")
    out(f"machine: {platform.platform()}, python {platform.python_version()}, os.cpu_count()={os.cpu_count()}; "
        f"load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    out(f"per-class search of PyramidKNNDetector (transductive='never'), {QUERIES} scored rows, "
        f"{sum(LEVELS)} + {LEVELS[-1]} columns; default GEMM_GROUP_ROWS = {default}")
    out(f"{'classes x per class':>20} {'k':>4} | {'per-class index: fit':>20} {'score':>7} | "
        f"{'matrix products: fit':>20} {'score':>7} | {'speed-up':>8} | max |score diff|")
    t_start = time.time()
    for classes, per_class in LAYOUTS:
        X, y, Q = data(classes, per_class)
        f0, s0, a0, r0 = timed(0, X, y, Q)
        f1, s1, a1, r1 = timed(float("inf"), X, y, Q)
        k = adaptive_k(per_class, fraction=0.05)
        diff = max(np.abs(a0 - a1).max(), np.abs(r0 - r1).max())
        out(f"{f'{classes} x {per_class}':>20} {k:>4} | {f0:>18.2f} s {s0:>5.2f} s | {f1:>18.2f} s {s1:>5.2f} s | "
            f"{(f0 + s0) / (f1 + s1):>7.1f}x | {diff:.1e}")
    pyramid_knn.GEMM_GROUP_ROWS = default
    out(f"wall time {time.time() - t_start:.0f} s; load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
