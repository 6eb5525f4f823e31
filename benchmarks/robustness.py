#!/usr/bin/env python
"""Robustness study of the OOD and wrong-label defaults over many real conditions (issue 10).

Not a test: prints a table and writes ``benchmarks/results/robustness.txt``.

Data (offline, see ``benchmarks/robust_data.py``): Fashion-MNIST (8,000-image
class-balanced subset of Debian's ``dataset-fashion-mnist``), scikit-learn's
``load_digits`` (1,797 real 8x8 digits), 1,480 object patches of 37 real photos,
247 pictures of natural objects in 7 categories (Debian's ``tuxpaint-stamps-default``)
and foolbox 3.3.4's 100 bundled real images (ImageNet, CIFAR-10/100, MNIST,
Fashion-MNIST; far-OOD only). One
embedding per image from the product's
``PyramidExtractor("tf_efficientnet_lite0", levels=None, mode="pool", grid=2)``
(5 level blocks of 64/96/160/448/1280 columns), cached on disk.

Conditions (all seeded):

- OOD ``near``: held-out classes of the same source, several random class
  splits (6 in / 4 out), reference 10..600 images per class;
- OOD ``near 8/2``: 8 classes in / 2 out (the demo's Bag + Ankle boot split and
  3 random splits per source), reference 30..250 images per class;
- OOD ``patches``: object patches of real photos (``robust_data.load_patches``),
  25 photos in / 12 out, 4 random splits, 10 or 20 crops per photo;
- OOD ``objects``: natural objects (``robust_data.load_stamps``), 5 categories
  in / 2 out, 5 random splits, 5 or 10 reference images per category, every
  other image scored;
- OOD ``far``: reference from one source, OOD from another source;
- OOD ``pollution``: 1 / 5 / 10% held-out-class images mixed into the reference
  (with random in-distribution labels);
- OOD ``rare``: 6 / 4 splits whose scored set holds only 1 / 3 / 10% held-out-class
  images (the other groups hold 20-50%); with 2-90 OOD images one AUROC is
  noisy, so each condition draws its OOD images ``RARE_DRAWS`` times (same
  in-distribution images) and reports the mean AUROC / FPR95 over the draws;
- OOD ``unsupervised``: no trusted reference; the scored set (ID + 10% OOD) is
  fitted on itself with self-excluded scores (methods needing labels: n/a);
- wrong labels: 2 / 5 / 10 / 20% of labels flipped uniformly, or to the most
  confusable class (the nearest other class mean of the deepest level); a
  condition with fewer than ``LABEL_DRAWS_BELOW`` wrong labels draws which
  labels are wrong ``LABEL_DRAWS`` times and reports the mean over the draws.

Positive class: OOD for the OOD task, "label is wrong" for the label task; the
metrics are ``ood_core.metrics.ood_metrics`` (AUROC, FPR95 at 95% of negatives
accepted).

Run (after the ~3-minute extraction, every condition x method pair: about 2.5 hours on 2 cores, the
per-pair times recorded in ``results/robustness_raw.json`` add up to 1.8 h for OOD and 0.7 h for wrong
labels; ``--reuse`` computes only the pairs not recorded yet, e.g. a new candidate, and ``--only ood`` /
``--only label`` one task)::

    MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 \\
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/robustness.py

Needs ``cleanlab`` (anchor only), ``foolbox==3.3.4`` (``--no-deps``; data only) and Debian's
``tuxpaint-stamps-default`` (data only; ``./setup.sh`` installs all three).
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.robust_data import embed_source  # noqa: E402
from ood_core.detectors import KNNDetector, LabelAgreementDetector, MahalanobisDetector  # noqa: E402
from ood_core.detectors.base import adaptive_k  # noqa: E402
from ood_core.detectors.label_votes import TIE_BREAK_WEIGHT, WeightedLabelVoteDetector, vote_score  # noqa: E402
from ood_core.detectors.lda import lda_probabilities  # noqa: E402
from ood_core.detectors.level_fusion import LevelFusionDetector  # noqa: E402
from ood_core.detectors.mahalanobis import MahalanobisPlusPlusDetector  # noqa: E402
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

#: draws of the OOD images per 'rare' condition (metrics averaged over the draws)
RARE_DRAWS = 5
#: wrong-label conditions with fewer wrong labels than this draw which labels are wrong LABEL_DRAWS times
LABEL_DRAWS_BELOW = 20
LABEL_DRAWS = 5
DEEP = 4  # index of the deepest level block (blocks.6, 1280 columns at grid 2)
RESULTS = os.path.join(HERE, "results", "robustness.txt")
RAW_RESULTS = os.path.join(HERE, "results", "robustness_raw.json")


# --------------------------------------------------------------------------- data


class Source:
    def __init__(self, name):
        d = embed_source(name)
        self.name = name
        self.X = d["X"]
        self.y = d["y"]
        self.names = d["names"]
        self.slices = [slice(int(a), int(b)) for a, b in d["blocks"]]
        self.level_dims = [s.stop - s.start for s in self.slices]
        self.level_names = [str(n) for n in d["level_names"]]

    def deep(self, rows):
        return self.X[rows][:, self.slices[DEEP]]


#: every source of the study (``benchmarks/robust_data.py``), by name
SOURCE_NAMES = ("fmnist", "digits", "foolbox", "patches", "stamps")


def load_sources(names=SOURCE_NAMES):
    """name -> :class:`Source` (cached embeddings), the argument of the condition generators."""
    return {name: Source(name) for name in names}


def class_split(split):
    """``(in-distribution classes, held-out classes)``: the 6 / 4 class split number ``split`` of a 10-class source."""
    perm = np.random.default_rng(1000 * split + 7).permutation(10)
    return np.sort(perm[:6]), np.sort(perm[6:])


def split_rows(rng, y, classes, n_test, n_ref):
    """Per class: the first n_test of a seeded permutation are test, the next n_ref reference."""
    test, ref, rest = [], [], []
    for c in classes:
        perm = rng.permutation(np.flatnonzero(y == c))
        test.append(perm[:n_test])
        ref.append(perm[n_test:n_test + n_ref])
        rest.append(perm[n_test + n_ref:])
    return np.concatenate(test), np.concatenate(ref), np.concatenate(rest)


def pollute(rng, ref, y_ref, pool, fraction, labels):
    """``(ref, y_ref)`` with ``round(fraction * len(ref))`` rows of ``pool`` appended, labelled by draws from ``labels``."""
    if not fraction:
        return ref, y_ref
    n_poll = int(round(fraction * ref.size))
    polluters = rng.choice(pool, n_poll, replace=False)
    return np.concatenate([ref, polluters]), np.concatenate([y_ref, rng.choice(labels, n_poll)])


def scored_rows(S, test_id, test_ood):
    """``{"X_test", "is_ood"}`` of a scored set from row indices: ID rows then OOD rows."""
    return {"X_test": S.X[np.concatenate([test_id, test_ood])],
            "is_ood": np.r_[np.zeros(test_id.size, bool), np.ones(test_ood.size, bool)]}


def held_out_condition(name, group, source, S, test_id, ref, test_ood, y_ref=None):
    """A condition from row indices of one source: reference ``ref``, test = ID rows then OOD rows."""
    return dict(name=name, group=group, source=source, X_ref=S.X[ref], y_ref=S.y[ref] if y_ref is None else y_ref,
                **scored_rows(S, test_id, test_ood))


def ood_conditions(sources):
    """Yield dicts: name, group, X_ref, y_ref, X_test, is_ood (X_ref None = unsupervised).

    ``sources``: name -> Source (:func:`load_sources`); without 'patches' / 'stamps' their conditions are left out.
    """
    fm, dg, fb = sources["fmnist"], sources["digits"], sources["foolbox"]
    pt, st = sources.get("patches"), sources.get("stamps")
    src = {"fmnist": fm, "digits": dg, "stamps": st}
    n_test = {"fmnist": 150, "digits": 60, "stamps": 16}
    sizes = {"fmnist": (10, 30, 100, 300, 600), "digits": (10, 30, 100)}

    def near(s, split, n_ref, pollution=0.0, group="near"):
        S = src[s]
        cin, cout = class_split(split)
        rng = np.random.default_rng([split, n_ref, int(pollution * 100)])
        test_id, ref, _ = split_rows(rng, S.y, cin, n_test[s], n_ref)
        test_ood, _, pool = split_rows(rng, S.y, cout, n_test[s], 0)
        # polluters carry in-distribution labels, drawn uniformly from the classes
        ref, y_ref = pollute(rng, ref, S.y[ref], pool, pollution, labels=cin)
        tag = f"{s} split{split} in={''.join(map(str, cin))} n/cls={n_ref}"
        if pollution:
            tag += f" poll={int(pollution * 100)}%"
        return held_out_condition(tag, group, s, S, test_id, ref, test_ood, y_ref=y_ref)

    for s in ("fmnist", "digits"):
        for split in range(4):
            for n in sizes[s]:
                yield near(s, split, n)
    # near-OOD with 8 classes in and 2 out: the demo's split (Bag, Ankle boot held out) and 3 random
    # splits per source; more, and more confusable, in-distribution classes than the 6 / 4 splits
    for s, ns in (("fmnist", (30, 100, 250)), ("digits", (30, 100))):
        S = src[s]
        outs = [np.array([8, 9])] if s == "fmnist" else []
        for split in range(3):
            outs.append(np.sort(np.random.default_rng(500 + split).permutation(10)[:2]))
        for si, cout in enumerate(outs):
            cin = np.setdiff1d(np.arange(10), cout)
            for n in ns:
                rng = np.random.default_rng([si, n, 77])
                nt = 100 if s == "fmnist" else 40
                test_id, ref, _ = split_rows(rng, S.y, cin, nt, n)
                test_ood, _, _ = split_rows(rng, S.y, cout, nt, 0)
                yield held_out_condition(f"{s} 8/2 out={''.join(map(str, cout))} n/cls={n}", "near 8/2", s, S,
                                         test_id, ref, test_ood)
    for s, ns in (("fmnist", (100, 300)), ("digits", (100,))):
        for split in range(2):
            for n in ns:
                for p in (0.01, 0.05, 0.10):
                    yield near(s, split, n, pollution=p, group="pollution")

    # rare OOD: the scored set holds only 1 / 3 / 10% held-out-class images (the density ratio's hard case);
    # RARE_DRAWS draws of the OOD images per condition, metrics averaged over the draws
    for s in ("fmnist", "digits"):
        for split in range(2):
            for n in (10, 100):
                for frac in (0.01, 0.03, 0.10):
                    S = src[s]
                    cin, cout = class_split(split)
                    rng = np.random.default_rng([split, n, 5, int(frac * 100)])
                    test_id, ref, _ = split_rows(rng, S.y, cin, n_test[s], n)
                    ood_all, _, _ = split_rows(rng, S.y, cout, n_test[s], 0)
                    n_ood = max(2, int(round(frac * test_id.size)))
                    # the first draw is the single draw of earlier runs (same generator state)
                    oods = [rng.choice(ood_all, n_ood, replace=False) for _ in range(RARE_DRAWS)]
                    cond = held_out_condition(f"{s} split{split} n/cls={n} rare OOD {int(frac * 100)}% "
                                              f"x{RARE_DRAWS} draws", "rare", s, S, test_id, ref, oods[0])
                    cond["draws"] = [scored_rows(S, test_id, o) for o in oods]
                    yield cond

    # object patches of real photos (class = the photo): 25 photos in, 12 out, 4 random splits
    if pt is not None:
        for split in range(4):
            perm = np.random.default_rng(300 + split).permutation(int(pt.y.max()) + 1)
            cin, cout = np.sort(perm[:25]), np.sort(perm[25:])
            for n in (10, 20):
                rng = np.random.default_rng([split, n, 301])
                test_id, ref, _ = split_rows(rng, pt.y, cin, 10, n)
                test_ood, _, _ = split_rows(rng, pt.y, cout, 10, 0)
                yield held_out_condition(f"patches split{split} 25 photos in n/cls={n}", "patches", "patches", pt,
                                         test_id, ref, test_ood)

    # natural objects (Tux Paint stamps, class = category): 5 categories in / 2 out, 5 random splits,
    # 5 or 10 reference images per category; every other image is scored (ID: the rest of the 5
    # categories, 8-62 each; OOD: all images of the 2 held-out ones)
    if st is not None:
        for split in range(5):
            perm = np.random.default_rng(700 + split).permutation(len(st.names))
            cin, cout = np.sort(perm[:5]), np.sort(perm[5:])
            for n in (5, 10):
                rng = np.random.default_rng([split, n, 701])
                ref, test_id, _ = split_rows(rng, st.y, cin, n, st.y.size)
                test_ood = np.flatnonzero(np.isin(st.y, cout))
                yield held_out_condition(f"stamps split{split} in={''.join(map(str, cin))} n/cls={n}", "objects",
                                         "stamps", st, test_id, ref, test_ood)

    # far-OOD: all classes of one source as ID, another source as OOD
    def far(s, n_ref, other):
        S = src[s]
        rng = np.random.default_rng([99, n_ref, len(other)])
        test_id, ref, _ = split_rows(rng, S.y, range(len(S.names)), n_test[s] // 2, n_ref)
        if other == "foolbox":
            same = "fashionMNIST" if s == "fmnist" else "mnist"  # same semantics: not OOD
            keep = np.flatnonzero(np.array(fb.names)[fb.y] != same)
            X_ood = fb.X[keep]
        else:
            O = src[other]
            X_ood = O.X[rng.choice(O.X.shape[0], min(500, O.X.shape[0]), replace=False)]
        return dict(
            name=f"{s} n/cls={n_ref} vs {other}", group="far", source=s, X_ref=S.X[ref],
            y_ref=S.y[ref], X_test=np.concatenate([S.X[test_id], X_ood]),
            is_ood=np.r_[np.zeros(test_id.size, bool), np.ones(X_ood.shape[0], bool)],
        )

    fars = [("fmnist", (10, 100, 600), ("digits", "foolbox")), ("digits", (10, 100), ("fmnist", "foolbox"))]
    if st is not None:
        fars += [("fmnist", (100,), ("stamps",)), ("stamps", (10,), ("fmnist", "digits"))]
    for s, ns, others in fars:
        for n in ns:
            for o in others:
                yield far(s, n, o)

    # unsupervised: the scored set is its own reference (ID + 10% held-out classes)
    for s, n_id in (("fmnist", 300), ("digits", 100)):
        S = src[s]
        for split in range(2):
            cin, cout = class_split(split)
            rng = np.random.default_rng([split, 4242])
            id_rows, _, _ = split_rows(rng, S.y, cin, n_id, 0)
            ood_all, _, _ = split_rows(rng, S.y, cout, n_id, 0)
            ood_rows = rng.choice(ood_all, int(round(0.1 * id_rows.size)), replace=False)
            rows = np.concatenate([id_rows, ood_rows])
            yield dict(
                name=f"{s} split{split} unsupervised n/cls={n_id} +10% OOD", group="unsupervised",
                source=s, X_ref=None, y_ref=None, X_test=S.X[rows],
                is_ood=np.r_[np.zeros(id_rows.size, bool), np.ones(ood_rows.size, bool)],
            )


def confusion_map(S):
    """Most confusable other class per class: nearest other class mean (deepest level, L2)."""
    Z = l2(S.X[:, S.slices[DEEP]])
    means = np.stack([Z[S.y == c].mean(0) for c in range(len(S.names))])
    d = ((means[:, None] - means[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return d.argmin(1)


def wrong_label_draws(rng, y_true, n_flip, noise, cmap, n_cls):
    """Draws ``{"y", "is_wrong"}`` of ``n_flip`` wrong labels: ``uniform`` (another class at random) or
    ``confusion`` (the most confusable class, ``cmap``). With fewer than LABEL_DRAWS_BELOW wrong labels,
    LABEL_DRAWS draws of which labels are wrong (the first is the single draw of earlier runs), metrics
    averaged over the draws."""
    draws = []
    for _ in range(LABEL_DRAWS if n_flip < LABEL_DRAWS_BELOW else 1):
        y = y_true.copy()
        flip = rng.choice(y.size, n_flip, replace=False)
        if noise == "uniform":
            y[flip] = (y[flip] + rng.integers(1, n_cls, flip.size)) % n_cls
        else:
            y[flip] = cmap[y[flip]]
        wrong = np.zeros(y.size, bool)
        wrong[flip] = True
        draws.append({"y": y, "is_wrong": wrong})
    return draws


def label_conditions(sources):
    """Yield dicts: name, group, X, y (given labels), is_wrong (``sources`` as for :func:`ood_conditions`)."""
    fm, dg, st = sources["fmnist"], sources["digits"], sources.get("stamps")
    plan = [(fm, (20, 100, 500), (0.02, 0.05, 0.10, 0.20)), (dg, (20, 100), (0.02, 0.05, 0.10, 0.20))]
    if st is not None:  # 15 per category (the smallest has 18)
        plan.append((st, (15,), (0.05, 0.10, 0.20)))
    for S, ns, rates in plan:
        cmap = confusion_map(S)
        n_cls = len(S.names)
        for n in ns:
            for rate in rates:
                for noise in ("uniform", "confusion"):
                    rng = np.random.default_rng([n, int(rate * 100), noise == "uniform", len(S.y)])
                    _, rows, _ = split_rows(rng, S.y, range(n_cls), 0, n)
                    draws = wrong_label_draws(rng, S.y[rows], int(round(rate * rows.size)), noise, cmap, n_cls)
                    name = f"{S.name} n/cls={n} {noise} {int(rate * 100)}%"
                    cond = dict(name=name if len(draws) == 1 else f"{name} x{len(draws)} draws",
                                group=f"label-{noise}", source=S.name, X=S.X[rows], cmap=cmap, **draws[0])
                    if len(draws) > 1:
                        cond["draws"] = draws
                    yield cond


# --------------------------------------------------------------------------- methods


def l2(X):
    X = np.asarray(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def min_class(y):
    return int(np.unique(np.asarray(y), return_counts=True)[1].min()) if y is not None else None


def run_knn(cond, cols, k, S):
    X_test = cond["X_test"][:, cols]
    if cond["X_ref"] is None:
        return KNNDetector(k=k).fit_score(X_test)
    return KNNDetector(k=k).fit(cond["X_ref"][:, cols]).score_samples(X_test)


def knn_auto_k(cond, fraction):
    if cond["X_ref"] is None:
        return adaptive_k(cond["X_test"].shape[0] - 1, fraction=fraction)
    return adaptive_k(min_class(cond["y_ref"]), fraction=fraction)


def run_fusion(cond, dims, **kw):
    det = LevelFusionDetector(level_dims=dims, **kw)
    if cond["X_ref"] is None:
        return det.fit_score(cond["X_test"])
    return det.fit(cond["X_ref"], cond["y_ref"]).score_samples(cond["X_test"])


def run_pyramid(cond, cols, dims, labels=True, **kw):
    det = PyramidKNNDetector(level_dims=dims, **kw)
    if cond["X_ref"] is None:
        return det.fit_score(cond["X_test"][:, cols])
    det.fit(cond["X_ref"][:, cols], cond["y_ref"] if labels else None)
    return det.score_samples(cond["X_test"][:, cols])


def subspace_residual_z(X_ref, X_test, explained=0.9, folds=5):
    """The residual score of ViM (Wang et al., CVPR 2022) as a z-score: rows L2-normalised, the norm of a scored
    row's part off the reference's principal subspace (top directions explaining ``explained`` of the variance),
    standardised on the reference rows' residuals, each from a subspace fitted on the other folds (cross-fitting)."""
    R, T = l2(X_ref).astype(np.float64), l2(X_test).astype(np.float64)

    def fit(Z):
        mu = Z.mean(axis=0)
        _, s, Vt = np.linalg.svd(Z - mu, full_matrices=False)
        P = Vt[:int(np.searchsorted(np.cumsum(s ** 2) / np.sum(s ** 2), explained)) + 1]
        return lambda X: np.linalg.norm((X - mu) - ((X - mu) @ P.T) @ P, axis=1)

    own = np.empty(R.shape[0])
    for part in np.array_split(np.random.default_rng(0).permutation(R.shape[0]), folds):
        rest = np.ones(R.shape[0], bool)
        rest[part] = False
        own[part] = fit(R[rest])(R[part])
    return (fit(R)(T) - own.mean()) / own.std()


def run_pyramid_residual(cond, S):
    """The product default with the deepest level's subspace residual z-score as a third term of its max (the
    density ratio, when the test lets it in, still added on top). Unsupervised: the default's scores (no
    reference to fit a subspace on)."""
    if cond["X_ref"] is None:
        return run_pyramid(cond, slice(None), S.level_dims)
    det = PyramidKNNDetector(level_dims=S.level_dims).fit(cond["X_ref"], cond["y_ref"])
    scores = det.score_samples(cond["X_test"])
    inductive = det.component_scores(cond["X_test"])[:, det.active_].max(axis=1)
    deep = S.slices[DEEP]
    residual = subspace_residual_z(cond["X_ref"][:, deep], cond["X_test"][:, deep])
    return scores - inductive + np.maximum(inductive, residual)


def run_maha(cls, cond, cols, **kw):
    if cond["X_ref"] is None:
        return None  # needs trusted labels
    det = cls(**kw).fit(cond["X_ref"][:, cols], cond["y_ref"])
    return det.score_samples(cond["X_test"][:, cols])


def run_cleanlab_ood(cond, cols):
    from cleanlab.outlier import OutOfDistribution

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ood = OutOfDistribution()
        if cond["X_ref"] is None:
            s = ood.fit_score(features=cond["X_test"][:, cols])
        else:
            ood.fit(features=cond["X_ref"][:, cols])
            s = ood.score(features=cond["X_test"][:, cols])
    return -np.asarray(s, dtype=np.float64)  # cleanlab: small = OOD; flip to higher = OOD


def ood_methods(S):
    """name -> (role, fn(cond)); role: default (the product's) / previous (the last release's) / anchor / candidate."""
    deep = S.slices[DEEP]
    full = slice(0, S.X.shape[1])
    dims = S.level_dims
    lvl3 = S.slices[3]
    m = {
        "previous knn k=50 deep": ("previous", lambda c: run_knn(c, deep, min(50, _max_k(c)), S)),
        "knn k=1 deep": ("anchor", lambda c: run_knn(c, deep, 1, S)),
        "knn k=10 deep": ("anchor", lambda c: run_knn(c, deep, 10, S)),
        "knn k=1 full": ("anchor", lambda c: run_knn(c, full, 1, S)),
        "knn k=10 full": ("anchor", lambda c: run_knn(c, full, 10, S)),
        "mahalanobis deep": ("anchor", lambda c: run_maha(MahalanobisDetector, c, deep)),
        "cleanlab OOD deep": ("anchor", lambda c: run_cleanlab_ood(c, deep)),
        "knn k=auto deep": ("candidate", lambda c: run_knn(c, deep, knn_auto_k(c, 0.1), S)),
        "knn k=auto.2 deep": ("candidate", lambda c: run_knn(c, deep, knn_auto_k(c, 0.2), S)),
        "knn k=auto blocks.4": ("candidate", lambda c: run_knn(c, lvl3, knn_auto_k(c, 0.1), S)),
        "fusion k=1 z mean": ("candidate", lambda c: run_fusion(c, dims, k=1)),
        "fusion k=auto z mean": ("candidate", lambda c: run_fusion(c, dims, k="auto")),
        "fusion k=auto robust mean": ("candidate", lambda c: run_fusion(c, dims, k="auto", standardize="robust")),
        "fusion k=auto rank mean": ("candidate", lambda c: run_fusion(c, dims, k="auto", standardize="rank")),
        "fusion k=auto z max": ("candidate", lambda c: run_fusion(c, dims, k="auto", fusion="max")),
        "fusion k=auto z mean L2-4": ("candidate", lambda c: run_fusion(c, dims, k="auto", levels=[2, 3, 4])),
        "fusion k=1..16 z mean": ("candidate", lambda c: run_fusion(c, dims, k=_multi_k(c))),
        "fusion k=1..16 z mean L2-4": ("candidate", lambda c: run_fusion(c, dims, k=_multi_k(c), levels=[2, 3, 4])),
        "fusion k=1..16 robust mean": ("candidate", lambda c: run_fusion(c, dims, k=_multi_k(c), standardize="robust")),
        "fusion k=auto z mean lv=auto": ("candidate", lambda c: run_fusion(c, dims, k="auto", levels="auto")),
        "fusion k=auto z mean lv=auto.02": ("candidate", lambda c: run_fusion(c, dims, k="auto", levels="auto", level_tolerance=0.02)),
        "fusion k=1..16 z mean lv=auto": ("candidate", lambda c: run_fusion(c, dims, k=_multi_k(c), levels="auto")),
        "fusion k=auto.2 z mean lv=auto": ("candidate", lambda c: run_fusion(c, dims, k="auto", k_fraction=0.2, levels="auto")),
        "fusion k=auto z mean L3-4": ("candidate", lambda c: run_fusion(c, dims, k="auto", levels=[3, 4])),
        "mahalanobis++ deep": ("candidate", lambda c: run_maha(MahalanobisPlusPlusDetector, c, deep)),
        DEFAULT_OOD: ("default", lambda c: run_pyramid(c, full, dims)),
        "pyramid knn + ratio": ("candidate", lambda c: run_pyramid(c, full, dims, transductive_weight=1)),
        "pyramid knn + weighted ratio + residual": ("candidate", lambda c: run_pyramid_residual(c, S)),
        "pyramid knn": ("candidate", lambda c: run_pyramid(c, full, dims, transductive="never")),
        "pyramid knn + ratio, no gate": ("candidate", lambda c: run_pyramid(c, full, dims, component_gate=None,
                                                                            transductive_weight=1)),
        "pyramid knn, no gate": ("candidate", lambda c: run_pyramid(c, full, dims, component_gate=None,
                                                                    transductive="never")),
        "pyramid knn no labels": ("candidate", lambda c: run_pyramid(c, full, dims, labels=False,
                                                                     transductive="never")),
        "pyramid knn deep only": ("candidate", lambda c: run_pyramid(c, deep, None, transductive="never")),
        # relative Mahalanobis (Ren et al. 2021) was measured here too: mean AUROC 0.376, worst 0.000 (inverted on
        # far-OOD); it was removed from the product (results/robustness.txt keeps its row from that run)
    }
    return m


def _max_k(c):
    n = c["X_test"].shape[0] if c["X_ref"] is None else c["X_ref"].shape[0]
    return n - 1


def _multi_k(c):
    n = min_class(c["y_ref"]) if c["X_ref"] is not None else c["X_test"].shape[0] - 1
    n = n - 1 if c["X_ref"] is not None else n
    return [k for k in (1, 2, 4, 8, 16) if k < n] or [1]


def cleanlab_label_scores(X, y, k=10):
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    k = min(k, int(np.bincount(y).min() * 0.8) - 1) if np.bincount(y).min() < 20 else k
    probs = cross_val_predict(
        KNeighborsClassifier(n_neighbors=max(1, k), metric="cosine", algorithm="brute"),
        X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba",
    )
    return 1.0 - get_label_quality_scores(y, probs)


#: the OOD default's row (PyramidKNNDetector defaults: the density ratio weighted by the test's effect)
DEFAULT_OOD = "pyramid knn + weighted ratio"
#: the wrong-label default's row (the product's WeightedLabelVoteDetector defaults, levels="auto"): two
#: votes (the second without the suspects of the first vote blended with the LDA), the margin, 10-fold
#: out-of-fold shrinkage LDA with a fitted temperature blended in (``lda_weight=0.5``), averaged with a
#: second such LDA fitted without Confident Learning's label issues (``lda_refit=True``)
DEFAULT_LABEL = "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2 + LDA .5 10-fold tempered + CL refit"
#: the last release's default: the same without the refitted LDA (``lda_refit=False``)
LAST_LABEL = "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2 + LDA .5 10-fold tempered"
#: the release before: 5-fold LDA probabilities as they come, suspects judged by the votes alone
BEFORE_LAST_LABEL = "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2 + LDA .5"
#: the release before (no LDA)
NO_LDA_LABEL = "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2"


def vote_tie_term(det, scores):
    """The tie-breaker part of ``fit_score`` ``scores`` of a vote detector fitted with ``margin_weight=0``."""
    return scores - (1 - TIE_BREAK_WEIGHT) * vote_score(det.class_probabilities_, det.codes_, 0.0)


def voting_matrix(det, X):
    """The fitted vote detector's voting levels of ``X``, each L2-normalised, side by side (what its LDA sees)."""
    blocks = det._blocks(np.asarray(X, dtype=np.float32), "embeddings")
    return np.hstack([blocks[i] for i in det.levels_])


def blended_vote_scores(votes, lda, ok, codes, tie, lda_weight, margin_weight):
    """Vote scores of ``votes`` averaged with LDA probabilities (rows ``ok``), plus the tie-breaker term."""
    probs = np.where(ok[:, None], (1 - lda_weight) * votes + lda_weight * lda, votes)
    return (1 - TIE_BREAK_WEIGHT) * vote_score(probs, codes, margin_weight) + tie


def before_last_label_scores(X, y, dims):
    """The wrong-label default of the release before last, composed from today's parts: the two votes (suspects from
    the first vote alone), then 5-fold out-of-fold LDA probabilities, untempered, averaged in half and half."""
    det = WeightedLabelVoteDetector(level_dims=dims, levels="auto", margin_weight=0.0, lda_weight=0.0)
    tie = vote_tie_term(det, det.fit_score(X, y))
    lda, ok, _ = lda_probabilities(voting_matrix(det, X), det.codes_, len(det.classes_), folds=5, calibrate=False)
    return blended_vote_scores(det.class_probabilities_, lda, ok, det.codes_, tie, 0.5, 0.2)


def label_methods(S):
    deep = S.slices[DEEP]
    full = slice(0, S.X.shape[1])
    dims = S.level_dims

    def wlv(c, **kw):
        kw.setdefault("prune_suspects", False)  # the first vote only, unless a method says otherwise
        kw.setdefault("margin_weight", 0.0)  # 1 - the vote for the given label, unless a method says otherwise
        kw.setdefault("lda_weight", 0.0)  # the votes alone, unless a method says otherwise
        return WeightedLabelVoteDetector(**kw).fit_score(c["X"] if "level_dims" in kw else c["X"][:, deep], c["y"])

    return {
        "previous label agreement k=20 deep": ("previous", lambda c: LabelAgreementDetector(k=20).fit_score(c["X"][:, deep], c["y"])),
        "cleanlab quality knn10 deep": ("anchor", lambda c: cleanlab_label_scores(c["X"][:, deep], c["y"])),
        "cleanlab quality knn10 full": ("anchor", lambda c: cleanlab_label_scores(l2(c["X"][:, full]), c["y"])),
        "label agreement k=10 deep": ("anchor", lambda c: LabelAgreementDetector(k=10).fit_score(c["X"][:, deep], c["y"])),
        "vote 1/d k=auto.5 deep": ("candidate", lambda c: wlv(c, k_fraction=0.5)),
        "vote 1/d k=20 deep": ("candidate", lambda c: wlv(c, k=20)),
        "vote 1/d k=auto.5 all levels": ("candidate", lambda c: wlv(c, k_fraction=0.5, level_dims=dims)),
        "vote 1/d k=auto.5 L3-4": ("candidate", lambda c: wlv(c, k_fraction=0.5, level_dims=dims, levels=[3, 4])),
        "vote 1/d k=auto.5 lv=auto": ("candidate", lambda c: wlv(c, k_fraction=0.5, level_dims=dims, levels="auto")),
        "vote 1/d k=auto.5 lv=auto + 2nd vote": ("candidate", lambda c: wlv(c, k_fraction=0.5, level_dims=dims,
                                                                             levels="auto", prune_suspects=True)),
        # the product default: WeightedLabelVoteDetector's own defaults (second vote, margin weight, LDA) on the levels
        DEFAULT_LABEL: ("default", lambda c: WeightedLabelVoteDetector(level_dims=dims, levels="auto").fit_score(
            c["X"], c["y"])),
        LAST_LABEL: ("candidate", lambda c: WeightedLabelVoteDetector(level_dims=dims, levels="auto",
                                                                      lda_refit=False).fit_score(c["X"], c["y"])),
        BEFORE_LAST_LABEL: ("candidate", lambda c: before_last_label_scores(c["X"], c["y"], dims)),
        NO_LDA_LABEL: ("candidate", lambda c: wlv(c, k_fraction=0.5, level_dims=dims, levels="auto",
                                                  prune_suspects=True, margin_weight=0.2)),
        "vote 1/d k=auto.5/50 L3-4": ("candidate", lambda c: wlv(c, k_fraction=0.5, k_max=50, level_dims=dims, levels=[3, 4])),
        "vote 1/d k=20 L3-4": ("candidate", lambda c: wlv(c, k=20, level_dims=dims, levels=[3, 4])),
        "vote rank k=auto.5 L3-4": ("candidate", lambda c: wlv(c, k_fraction=0.5, weighting="rank", level_dims=dims, levels=[3, 4])),
    }


# --------------------------------------------------------------------------- evaluation


SLIM_GROUPS = ("rare",)
SLIM_KEEP = ("pyramid knn", "pyramid knn + ratio", "pyramid knn + ratio, no gate", "pyramid knn, no gate",
             "pyramid knn + weighted ratio + residual")


def evaluate(conds, methods_for, label_task, previous=None):
    """Metrics of every method on every condition; ``previous`` rows (same names) are reused."""
    previous = {r["name"]: r["methods"] for r in (previous or [])}
    rows = []
    for cond in conds:
        S = cond.pop("_S")
        pos = cond["is_wrong"] if label_task else cond["is_ood"]
        res = {"name": cond["name"], "group": cond["group"], "source": cond["source"], "methods": {}}
        for name, (role, fn) in methods_for(S).items():
            if cond["group"] in SLIM_GROUPS and role == "candidate" and name not in SLIM_KEEP:
                continue  # time: the rare group runs the default, the anchors and the inductive pyramid only
            old = previous.get(cond["name"], {}).get(name)
            if old is not None and "error" not in old and (not label_task or "ties_at_max" in old):
                res["methods"][name] = {**old, "role": role}
                continue
            t0 = time.time()
            draws = cond.get("draws") or [{}]  # several draws of the positives, metrics averaged
            try:
                per_draw = [(fn({**cond, **d}), d.get("is_wrong" if label_task else "is_ood", pos)) for d in draws]
            except Exception as exc:  # reported in the table, never silently dropped
                res["methods"][name] = {"role": role, "error": f"{type(exc).__name__}: {exc}"[:200]}
                continue
            if per_draw[0][0] is None:
                continue
            mets = [ood_metrics(sc, p) for sc, p in per_draw]
            s = per_draw[0][0]
            entry = {"role": role, "auroc": float(np.mean([m["auroc"] for m in mets])),
                     "fpr95": float(np.mean([m["fpr95"] for m in mets])), "sec": time.time() - t0}
            if len(mets) > 1:
                entry["auroc_draws"] = [float(m["auroc"]) for m in mets]
            if label_task:
                entry["ties_at_max"] = int(np.sum(s == s.max()))
                top = np.sort(s)[::-1][: max(1, int(np.ceil(0.1 * s.size)))]
                entry["largest_tie_top10"] = int(np.unique(top, return_counts=True)[1].max())
            res["methods"][name] = entry
        rows.append(res)
        print(f"  {cond['name']:<48} " + " ".join(
            f"{v.get('auroc', float('nan')):.3f}" for v in res["methods"].values()), flush=True)
    return rows


def summarize(rows, title, out):
    names = list(rows[0]["methods"])
    roles = {n: rows[0]["methods"][n]["role"] for n in names}
    anchors = [n for n in names if roles[n] == "anchor"]

    def vals(n, key="auroc", rs=rows):
        return np.array([r["methods"].get(n, {}).get(key, np.nan) for r in rs], dtype=float)

    best_anchor = np.nanmax(np.stack([vals(a) for a in anchors]), axis=0)  # per-condition oracle
    best_anchor_fpr = np.nanmin(np.stack([vals(a, "fpr95") for a in anchors]), axis=0)
    anchor_means = {a: np.nanmean(1 - vals(a)) for a in anchors}
    best_single = min(anchor_means, key=anchor_means.get)
    groups = sorted({r["group"] for r in rows})

    out(f"\n=== {title}: {len(rows)} conditions; groups: " + ", ".join(
        f"{g} ({sum(r['group'] == g for r in rows)})" for g in groups))
    out("AUROC mean / worst over all conditions, mean FPR95; per group: mean AUROC. "
        "'best anchor' = best anchor per condition (oracle over " + ", ".join(anchors) + ").")
    header = f"{'method':<36} {'role':<9} {'mean':>6} {'worst':>6} {'FPR95':>6} " + " ".join(
        f"{g[:12]:>12}" for g in groups) + "  bar"
    out(header)

    def line(label, role, a, f, bar=""):
        per = " ".join(
            f"{np.nanmean(a[[r['group'] == g for r in rows]]):>12.3f}" for g in groups)
        out(f"{label:<36} {role:<9} {np.nanmean(a):>6.3f} {np.nanmin(a):>6.3f} {np.nanmean(f):>6.3f} {per}  {bar}")

    verdicts = {}
    for n in names:
        a = vals(n)
        ok = ~np.isnan(a)
        losses = int(np.sum(a[ok] < best_anchor[ok] - 0.02))
        err, err_anchor = np.nanmean(1 - a[ok]), np.nanmean(1 - best_anchor[ok])
        err_single = np.nanmean(1 - vals(best_single)[ok])
        meets = losses == 0 and err <= 0.5 * err_anchor
        verdicts[n] = dict(losses=losses, err=err, err_oracle=err_anchor, err_single=err_single,
                           meets=meets, n=int(ok.sum()))
        bar = (f"loses {losses}/{ok.sum()}; err {err:.3f} vs oracle {err_anchor:.3f}"
               f" ({err / err_anchor:.2f}x), vs {best_single} {err_single:.3f}")
        line(n, roles[n], a, vals(n, "fpr95"), bar if roles[n] != "anchor" else "")
    line("best anchor (per-condition oracle)", "anchor", best_anchor, best_anchor_fpr)
    errors = {n: r["methods"][n]["error"] for r in rows for n in names if "error" in r["methods"].get(n, {})}
    for n, e in errors.items():
        out(f"  note: {n} failed on some conditions, e.g. {e}")
    return verdicts, best_anchor, vals


def report_losses(rows, method, best_anchor, vals, out, limit=12):
    a = vals(method)
    lose = [(r["name"], a[i], best_anchor[i]) for i, r in enumerate(rows)
            if not np.isnan(a[i]) and a[i] < best_anchor[i] - 0.02]
    out(f"  where '{method}' loses to the best anchor by > 0.02 AUROC: {len(lose)} condition(s)")
    for name, x, b in sorted(lose, key=lambda t: t[1] - t[2])[:limit]:
        out(f"    {name:<52} {x:.3f} vs {b:.3f}")


def calibration_check(sources, out):
    """Share of test ID samples flagged at alpha by conformal p-values of the proposed default."""
    from ood_core.calibration import ConformalCalibrator

    alphas = (0.01, 0.05, 0.10)
    shares = {a: [] for a in alphas}
    recall = {a: [] for a in alphas}
    n = 0
    for c in ood_conditions(sources):
        if c["group"] != "near":
            continue
        S = sources[c["source"]]
        det = PyramidKNNDetector(level_dims=S.level_dims).fit(c["X_ref"], c["y_ref"])
        scores = det.score_samples(c["X_test"])
        # the reference's leave-one-out scores on the batch's scale (plus their density ratio when it is used),
        # as compute_ood_scores calibrates them
        cal = ConformalCalibrator().fit(det.batch_reference_scores_)
        p = cal.p_values(scores)
        for a in alphas:
            shares[a].append(np.mean(p[~c["is_ood"]] <= a))
            recall[a].append(np.mean(p[c["is_ood"]] <= a))
        n += 1
    out(f"\nconformal p-values of the default (pyramid k-NN + density ratio, trusted labels) over the {n} near-OOD "
        "conditions: share of test ID flagged at p <= alpha (should be ~alpha) / share of OOD flagged")
    for a in alphas:
        out(f"    alpha={a:.2f}: ID flagged mean {np.mean(shares[a]):.3f} (min {np.min(shares[a]):.3f}, "
            f"max {np.max(shares[a]):.3f}); OOD flagged mean {np.mean(recall[a]):.3f}")


LEGEND = """method names: 'deep' = deepest level blocks.6 (1280 columns), 'full' = all 5 levels concatenated,
L2-normalised; 'knn k=auto' = KNNDetector(k=adaptive_k(smallest reference class, fraction=0.1, k_max=50)),
'k=auto.2' the same with fraction 0.2 (unsupervised: k from the scored-set size); 'fusion' =
LevelFusionDetector (per-level k-NN, standardised on the reference's leave-one-out scores: z = mean/std,
robust = median/MAD, rank = -log conformal p; fused by mean or max; 'lv=auto' = levels within 0.05
(lv=auto.02: 0.02) of the best leave-one-out 1-NN label accuracy; 'L3-4' = levels blocks.4 + blocks.6;
'k=1..16' = every k in 1,2,4,8,16 as separate components); 'vote' = WeightedLabelVoteDetector
(1/d or rank weights, k=auto.5 = adaptive_k(smallest class - 1, fraction 0.5, k_max 20), /50 = k_max 50;
scores include the 1% same-label distance tie-breaker; first vote only, except '+ 2nd vote' = averaged with a
second vote in which the first vote's suspects do not vote; score 1 - vote for the given label, except
'+ margin .2' = (1 - vote for the label + 0.2 x the strongest other class's vote) / 1.2 (the release before
last's default); '+ LDA .5' = the last release's default: the votes averaged half and half with 5-fold
out-of-fold shrinkage-LDA class probabilities on the voting levels before scoring; '10-fold tempered' = the
product default: 10-fold, the LDA probabilities raised to the power t that fits the given labels best (temperature
scaling), and the second vote's suspects judged by the first vote blended with them, ood_core/detectors/lda.py);
cleanlab OOD = OutOfDistribution (k=10 mean cosine
distance); cleanlab quality = 1 - get_label_quality_scores of 5-fold out-of-fold KNeighborsClassifier(10, cosine)
probabilities. Mahalanobis variants need trusted labels: n/a in the unsupervised group.
'pyramid knn' = PyramidKNNDetector (the product default): k-NN per trusted class (k = 5% of each
class) on the deepest level and on all 5 levels, each standardised on the reference's leave-one-out scores,
max of the two, except that a component whose leave-one-out 1-NN label accuracy on the reference is more
than 0.05 below the other's sits out (component_gate=0.05; 'no gate' = both always take part), each image
scored on its own (transductive="never"); 'pyramid knn + ratio' = the last release's default: the same plus the
scored-set density ratio when a permutation test (p <= 0.01) finds the scored set different from the reference
(ood_core/detectors/transductive.py); 'pyramid knn + weighted ratio' = the product default: the ratio weighted
1 to 2 by the test's effect (transductive_weight="auto"); '+ residual' = the default with a third term in its
max: the deepest level's distance to the reference's principal subspace (ViM's residual, 90% of the variance),
z-scored on 5-fold cross-fitted reference residuals (unsupervised: the default); 'no labels' = the inductive pyramid
without the trusted labels (one class, k = 2% of the reference); 'deep only' = the per-class search on the
deepest level alone. Roles: default = the product's default now, previous = the last release's default.
The 'rare' group runs the default, the 'pyramid knn' variants and the anchors only (time); the other candidates' means
are over the other groups."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("ood", "label"), default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="reuse metrics of (condition, method) pairs already in results/robustness_raw.json "
                         "(results are deterministic; use after adding a candidate)")
    ap.add_argument("--propose-ood", default=DEFAULT_OOD, help="the method compared in detail (the default)")
    ap.add_argument("--propose-label", default=DEFAULT_LABEL)
    args = ap.parse_args()
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        pass

    t0 = time.time()
    sources = load_sources()
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    n = {name: S.X.shape[0] for name, S in sources.items()}
    out(f"robustness study: tf_efficientnet_lite0, 5 levels pooled 2x2 {sources['fmnist'].level_names} "
        f"{sources['fmnist'].level_dims}; fmnist {n['fmnist']} images, digits {n['digits']}, foolbox {n['foolbox']}, "
        f"photo patches {n['patches']}, stamps (natural objects, 7 categories) {n['stamps']}")
    out(LEGEND)
    previous = {}
    if args.reuse and os.path.isfile(RAW_RESULTS):
        with open(RAW_RESULTS) as f:
            previous = json.load(f)
    raw = {}
    if args.only in (None, "ood"):
        conds = []
        for c in ood_conditions(sources):
            c["_S"] = sources[c["source"]]
            conds.append(c)
        print(f"OOD task: {len(conds)} conditions", flush=True)
        raw["ood"] = evaluate(conds, ood_methods, label_task=False, previous=previous.get("ood"))
    if args.only in (None, "label"):
        conds = []
        for c in label_conditions(sources):
            c["_S"] = sources[c["source"]]
            conds.append(c)
        print(f"wrong-label task: {len(conds)} conditions", flush=True)
        raw["label"] = evaluate(conds, label_methods, label_task=True, previous=previous.get("label"))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    if args.only:  # keep the other task's rows from an earlier full run
        try:
            with open(RAW_RESULTS) as f:
                old = json.load(f)
            raw = {**old, **raw}
        except (OSError, ValueError):
            pass
    with open(RAW_RESULTS, "w") as f:
        json.dump(raw, f, indent=1)

    for task, title, proposal in (("ood", "OOD (positive = OOD)", args.propose_ood),
                                  ("label", "WRONG LABELS (positive = label is wrong)", args.propose_label)):
        if task not in raw:
            continue
        rows = raw[task]
        verdicts, best_anchor, vals = summarize(rows, title, out)
        default = [n for n, v in rows[0]["methods"].items() if v["role"] == "previous"][0]
        for n in (default, proposal):
            v = verdicts[n]
            out(f"bar for '{n}': loses in {v['losses']}/{v['n']} conditions; mean error "
                f"{v['err']:.4f} vs best-anchor oracle {v['err_oracle']:.4f} (needs <= "
                f"{0.5 * v['err_oracle']:.4f}) -> {'MEETS' if v['meets'] else 'does NOT meet'} the bar")
            report_losses(rows, n, best_anchor, vals, out)
        if task == "label":
            out("ties (mean over conditions): samples sharing the maximum score / largest group sharing one "
                "score among the top-10% scores (a reviewer's first pages; fewer = a usable ranking):")
            for n in rows[0]["methods"]:
                t_max = np.mean([r["methods"][n].get("ties_at_max", np.nan) for r in rows])
                t_top = np.mean([r["methods"][n].get("largest_tie_top10", np.nan) for r in rows])
                out(f"    {n:<40} {t_max:8.1f} {t_top:8.1f}")
        anchors = [n for n, v in rows[0]["methods"].items() if v["role"] == "anchor"]
        out(f"per condition, AUROC (FPR95): previous default | default '{proposal}' | best anchor (which)")
        for r in rows:
            m = r["methods"]
            best = max((a for a in anchors if "auroc" in m.get(a, {})), key=lambda a: m[a]["auroc"])
            out(f"    {r['name']:<50} {m[default]['auroc']:.3f} ({m[default]['fpr95']:.2f}) | "
                f"{m[proposal]['auroc']:.3f} ({m[proposal]['fpr95']:.2f}) | "
                f"{m[best]['auroc']:.3f} ({m[best]['fpr95']:.2f}) {best}")
        for g in sorted({r["group"] for r in rows}):
            sub = [r for r in rows if r["group"] == g]
            out(f"  [{g}] worst AUROC: previous {min(r['methods'][default]['auroc'] for r in sub):.3f}, "
                f"default {min(r['methods'][proposal].get('auroc', np.nan) for r in sub):.3f}")
    if args.only in (None, "ood"):
        calibration_check(sources, out)
    out(f"\nwall time {time.time() - t0:.0f} s")
    if args.only is None or True:
        with open(RESULTS, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
