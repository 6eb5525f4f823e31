r"""Confident Learning's label issues by noise rate, on numpy (Northcutt, Jiang & Chuang, JAIR 2021).

Given out-of-sample class probabilities :math:`p(c \mid x)` of labelled samples, Confident Learning
estimates how many samples of each given class truly belong to each other class and flags that many:

1. **Class thresholds.** :math:`t_j` = the mean of :math:`p(j \mid x)` over the samples labelled
   :math:`j` (a class nobody carries gets :math:`t_j = 2`, so nobody is counted into it; at least
   :math:`2 \cdot 10^{-6}`).
2. **Confident joint.** A sample labelled :math:`i` counts into :math:`C_{ij}` for the class :math:`j`
   with :math:`p(j \mid x) \ge t_j - 10^{-6}` (the largest :math:`p(j \mid x)` when several pass; not
   counted when none does). The diagonal is raised to at least 1.
3. **Calibration.** Each row :math:`i` is scaled to the number of samples labelled :math:`i`, then the
   whole matrix to the number of samples, and every row is rounded to integers that keep its (rounded)
   total: the largest remainders go up first.
4. **Prune by noise rate.** For every off-diagonal :math:`(i, j)`, the :math:`C_{ij}` samples labelled
   :math:`i` with the largest margin :math:`p(j \mid x) - p(i \mid x)` are flagged (a sample can be
   chosen for several :math:`j`). A class with one sample keeps it; where the diagonal rounds to 0 it
   is set to 1 and the row's non-zero off-diagonal counts share that sample out and round down (on
   integer counts: each drops by one).
5. A sample whose probabilities favour its given label (within :math:`10^{-6}`) is never flagged.

These are the paper's definitions with the choices of cleanlab 2.x's ``filter.find_label_issues``
defaults (``filter_by="prune_by_noise_rate"``, ``min_examples_per_class=1``, ``frac_noise=1``);
``tests/test_confident_learning.py`` checks this module against cleanlab's function (a development
dependency only) on real probabilities. Used by :class:`~ood_core.detectors.WeightedLabelVoteDetector`
to fit its LDA a second time without the samples flagged here.
"""

import numpy as np

#: fuzzy comparison of probabilities (thresholds and the given label's own vote)
TOLERANCE = 1e-6
#: no class threshold is lower than this
MIN_THRESHOLD = 2 * TOLERANCE
#: the threshold of a class no sample carries: above every probability
ABSENT_THRESHOLD = 2.0


def class_thresholds(codes, probs):
    """``(C,)`` per class: the mean probability of the class over the samples labelled with it."""
    n_classes = probs.shape[1]
    counts = np.bincount(codes, minlength=n_classes)
    sums = np.zeros(n_classes)
    np.add.at(sums, codes, probs[np.arange(codes.size), codes])
    means = np.where(counts > 0, sums / np.maximum(counts, 1), ABSENT_THRESHOLD)
    return np.maximum(means, MIN_THRESHOLD)


def _round_keeping_total(row):
    """``row`` (floats) rounded to integers whose sum is ``round(row.sum())``: after rounding each entry,
    the entries that lost the most (or gained the most) move by one until the total matches."""
    ints = np.round(row)
    gap = int(np.round(np.round(row.sum()) - ints.sum()))
    while gap:
        step = 1 if gap > 0 else -1
        order = np.argsort(row - ints)  # ascending: the last ones were rounded down the most
        for i in (order[::-1] if step > 0 else order)[:min(abs(gap), row.size)]:
            ints[i] += step
        gap = int(np.round(np.round(row.sum()) - ints.sum()))
    return ints


def confident_joint(codes, probs):
    """``(C, C)`` integer counts: row = given class, column = the class the probabilities confidently favour,
    calibrated so that row ``i`` sums to the number of samples labelled ``i`` (module docstring)."""
    n, n_classes = probs.shape
    confident = probs >= class_thresholds(codes, probs) - TOLERANCE
    n_confident = confident.sum(axis=1)
    guess = np.where(n_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    counted = n_confident > 0
    joint = np.zeros((n_classes, n_classes))
    np.add.at(joint, (codes[counted], guess[counted]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    label_counts = np.bincount(codes, minlength=n_classes)
    joint = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-100) * label_counts[:, None]
    joint = joint / max(joint.sum(), 1e-100) * n
    return np.stack([_round_keeping_total(row) for row in joint]).astype(np.int64)


def _keep_one_per_class(joint):
    """Each diagonal at least 1: the row's non-zero off-diagonal counts give up the difference in even shares,
    rounded down (cleanlab's ``min_examples_per_class=1``; integer counts each drop by one)."""
    joint = joint.astype(float)
    for i in np.flatnonzero(joint.diagonal() < 1):
        need = 1 - joint[i, i]
        others = np.flatnonzero(joint[i] > 0)
        others = others[others != i]
        if others.size:
            joint[i, others] = np.maximum(joint[i, others] - need / others.size, 0)
        joint[i, i] = 1
    return np.floor(joint).astype(np.int64)


def label_issues(codes, probs):
    """``(N,)`` bool: the samples Confident Learning flags as mislabelled by noise rate (module docstring).

    ``codes`` ``(N,)`` given class indices ``0..C-1``; ``probs`` ``(N, C)`` out-of-sample class probabilities
    (rows summing to 1).
    """
    codes = np.asarray(codes, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    joint = _keep_one_per_class(confident_joint(codes, probs))
    flagged = np.zeros(codes.size, bool)
    for i in range(probs.shape[1]):
        rows = np.flatnonzero(codes == i)
        if rows.size <= 1:
            continue
        for j in np.flatnonzero(joint[i] > 0):
            if j == i:
                continue
            margin = probs[rows, j] - probs[rows, i]
            flagged[rows[np.argsort(-margin)[:joint[i, j]]]] = True
    own = probs.copy()
    own[np.arange(codes.size), codes] += TOLERANCE
    flagged[own.argmax(axis=1) == codes] = False
    return flagged
