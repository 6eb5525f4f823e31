#!/usr/bin/env python
"""Cost of the default detector's scored-set density ratio (not a test: prints a table).

``PyramidKNNDetector`` (5 levels, 2,048 columns as the default EfficientNet-Lite0
embedding) fitted on a labelled reference and scoring one batch, with
``transductive="never"`` and ``"always"`` (the permutation test runs either way
under ``"auto"``, so ``"always"`` is its cost). Data: clustered Gaussian
embeddings (20 classes), float32. The last size exceeds ``MAX_POOLED`` (20,000): the ratio
searches a sample of 6,000 reference + 14,000 scored rows and measures the other 16,000 scored
rows against it. Results in ``benchmarks/results/bench_density_ratio.txt``.

Run::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/bench_density_ratio.py
"""

import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402

DIMS = [64, 96, 160, 448, 1280]
SIZES = ((1000, 4000), (3600, 1500), (4000, 8000), (5000, 15000), (6000, 30000))


def data(rng, n, centers):
    y = rng.integers(0, len(centers), n)
    return (centers[y] + rng.normal(size=(n, centers.shape[1]))).astype(np.float32), y


def main():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, sum(DIMS))) * 0.3
    lines = [f"{'reference':>9} {'scored':>7} {'never (s)':>10} {'always (s)':>11} {'ratio p':>8}  pooled rows"]
    print(lines[0], flush=True)
    for n_ref, n_scored in SIZES:
        X_ref, y = data(rng, n_ref, centers)
        X, _ = data(rng, n_scored, centers)
        times, p_value, pool = [], None, "all"
        for mode in ("never", "always"):
            det = PyramidKNNDetector(level_dims=DIMS, transductive=mode).fit(X_ref, y)
            t0 = time.perf_counter()
            det.score_samples(X)
            times.append(time.perf_counter() - t0)
            if det.transductive_:
                p_value = det.transductive_["p_value"]
                if det.transductive_.get("pool_sample"):
                    pool = "sample of {:,} + {:,}".format(*det.transductive_["pool_sample"])
        lines.append(f"{n_ref:>9,} {n_scored:>7,} {times[0]:>10.1f} {times[1]:>11.1f} {p_value:>8.3f}  {pool}")
        print(lines[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"peak resident memory of the process: {peak:,.0f} MiB")
    print(lines[-1])
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "bench_density_ratio.txt"), "w") as f:
        f.write("scoring time of one batch, 2 shared cores, 2,048 columns in 5 levels, exact search (index=\"flat\")\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
