#!/usr/bin/env python
"""OOD crowds near one trusted class, built the same way on every source.

Not a test: prints a table and writes ``benchmarks/results/ood_crowds.txt``.

The class-mix gate of the default OOD detector (``ood_core/detectors/class_mix.py``)
gives each in-distribution-looking scored image its nearest trusted class; held-out
classes that resemble one trusted class therefore look like more of that class, and
its crowd check has to tell such a crowd from a real class-mix shift. The
Fashion-MNIST family splits of ``unseen_images.py --part crowd`` were written after
that failure was found; this script builds crowds by one rule on each source
instead: for every class, the two classes whose mean deepest-level embedding
(L2-normalised images, averaged) is nearest to its own are held out and the others
trusted, so the held-out images crowd near that class.

- sources: Fashion-MNIST's test split (``fmnist_test``), the study's Fashion-MNIST
  train images (``fmnist``) and the 8x8 digits (``digits``), 10 classes each;
- 20 / 90 trusted images per class (digits 20 / 60), 40 scored images per
  trusted class and as many held-out-class images (half the scored set OOD);
- methods: the product default, the previous release's gate (the matched draw
  without the crowd check), the default without the class-mix gate
  (``class_mix_gate=None``), each image on its own (``transductive="never"``)
  and the study's anchors on the same embeddings; the bar of
  ``heldout_check.run`` (positive = OOD).

Run (after the embeddings of ``robustness.py`` / ``unseen_images.py``; about 10 minutes on one thread)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/ood_crowds.py
"""

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.heldout_check import run  # noqa: E402
from benchmarks.robustness import DEEP, Source  # noqa: E402
from benchmarks.unseen_images import CROWD_SHOWN, crowd_methods, half_ood_condition  # noqa: E402

RESULTS = os.path.join(HERE, "results", "ood_crowds.txt")
SEED = 2027
#: source -> trusted images per class
REFERENCE = {"fmnist_test": (20, 90), "fmnist": (20, 90), "digits": (20, 60)}
SCORED = 40
HELD_OUT = 2


def nearest_classes(S):
    """class -> the ``HELD_OUT`` classes whose mean deepest-level embedding is nearest to its own."""
    Z = S.X[:, S.slices[DEEP]].astype(np.float64)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    classes = np.unique(S.y)
    means = np.stack([Z[S.y == c].mean(axis=0) for c in classes])
    dist = np.linalg.norm(means[:, None] - means[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    return {int(c): classes[np.argsort(dist[i])[:HELD_OUT]] for i, c in enumerate(classes)}


def crowd_conditions(S):
    for kept, near in nearest_classes(S).items():
        cin = np.setdiff1d(np.unique(S.y), near)
        for n in REFERENCE[S.name]:
            yield half_ood_condition(S, np.random.default_rng([SEED, kept, n]),
                                     f"{S.name} near {kept}: out={''.join(map(str, near))} n/cls={n}", cin, near, n,
                                     SCORED, group="crowd")


def main():
    t0 = time.time()
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out("OOD crowds near one trusted class (benchmarks/ood_crowds.py docstring); AUROC, positive = OOD, scored sets "
        f"half OOD; shown: {' / '.join(CROWD_SHOWN)}")
    for name in REFERENCE:
        S = Source(name)
        out(f"\n=== {name}")
        run(crowd_conditions(S), crowd_methods, list(CROWD_SHOWN), "is_ood", out)
    out(f"\nwall time {time.time() - t0:.0f} s")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
