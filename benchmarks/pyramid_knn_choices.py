#!/usr/bin/env python
"""The design choices of ``pyramid_knn`` (the default OOD detector), measured on the robustness conditions.

Not a test: prints a table and writes ``benchmarks/results/pyramid_knn_choices.txt``.

Over every OOD condition of ``benchmarks/robustness.py`` that has a trusted
reference (same stored embeddings, same seeds), each variant is computed
with numpy from its formula:

- search: ``per-class`` (min over the trusted classes of the distance to the
  class's k-th nearest neighbour) or ``global`` (k-th nearest neighbour of the
  whole reference);
- components: the deepest level, all levels (the whole stored embedding), or
  both fused by ``max`` / ``mean`` of their z-scores (standardised on the
  reference's leave-one-out scores), or the component with the better
  leave-one-out 1-NN label accuracy (``acc-select``), or the max without a
  component whose accuracy is more than m below the other's (``acc-gate m``;
  the product default is ``per-class max(deep,all) k0.05 acc-gate 0.05``);
- k: 2 / 5 / 10% of the smallest trusted class (at least 1, at most 50), per
  component;
- other ways to use the same two components (``extra`` variants, per-class
  search): k=1 (the anchor's k) in the max, all four of k=1 and k=5% in one
  max, log distances standardised, conformal ``-log p`` instead of z, and a
  class-ambiguity term (entropy of a softmin over the per-class distances, or
  the nearest / second-nearest class distance ratio) averaged with the
  default's score; the gate only when its accuracy gap is significant (an
  exact McNemar test on the reference, for references of a few images per
  class); k=1 on a reference cleaned of rows whose leave-one-out 1-NN label
  disagrees with their own (to keep k=1's strength without its pollution
  weakness); and a third kind of evidence in the default's max: the deepest
  level's distance to the reference's principal subspace (the residual score
  of ViM, Wang et al., CVPR 2022: the norm of what the top principal
  directions, 90% of the variance, leave unexplained), standardised on the
  reference's own residuals from 5-fold cross-fitting; and each component's
  z-scores averaged over k=1 and k=5% before the (gated) max, always, or only
  when the product's density-ratio permutation test does *not* fire on the
  scored set (``ood_core/detectors/transductive.py``; the product detector is
  run on the same arrays to read its decision, ``transductive_["used"]``), the
  default's 5% rank kept where it fires (a polluted reference's scored set
  holds many OOD images, so the test fires there).

The conditional variant is also reported as the product scores it: with the
density ratio added where the test fires (the product's own score there, so
only where it does not fire does the pyramid part change), next to the
product default's full score (two lines below the table; each row of a
``rare`` condition is judged by its own draw's decision).

Positive class = OOD; AUROC mean and worst case over all conditions (a
``rare`` condition's AUROC is the mean over its draws of the OOD images), mean per
group, and losses (> 0.02 below the per-condition best anchor recorded in
``results/robustness_raw.json``; run ``robustness.py`` first).

Run (``--dump PATH``: also write every condition's per-draw AUROCs and test decisions as JSON)::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/pyramid_knn_choices.py
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
    RAW_RESULTS, l2, load_sources, ood_conditions, subspace_residual_z)
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402

RESULTS = os.path.join(HERE, "results", "pyramid_knn_choices.txt")
#: the variant that swaps the default's pyramid part only when the product's density-ratio test does not fire
CONDITIONAL = "extra: mean(k1, k5%) per component unless the ratio test fires"
FRACTIONS = (0.02, 0.05, 0.1)
#: margins of the accuracy gate (``acc-gate`` variants)
ACC_MARGINS = (0.02, 0.05, 0.1, 0.2)


def kth(D, k):
    k = max(1, min(k, D.shape[1]))
    return np.partition(D, k - 1, axis=1)[:, k - 1]


def class_distances(D, y, k):
    """``(N, C)``: per trusted class, the distance to the class's k-th nearest neighbour (inf if too small)."""
    classes = np.unique(y)
    out = np.full((D.shape[0], classes.size), np.inf)
    for i, c in enumerate(classes):
        Dc = D[:, y == c]
        if Dc.shape[1] >= k:
            out[:, i] = kth(Dc, k)
    return out


def per_class(D, y, k):
    """Min over the trusted classes of the distance to the class's k-th nearest neighbour."""
    return class_distances(D, y, k).min(axis=1)


def component_distances(cond, S):
    """Per component (``deep``, ``all``; rows L2-normalised): test-to-reference distances and the
    reference's own, itself left out: ``{name: (D, DR)}``."""
    out = {}
    for comp, cols in (("deep", S.slices[-1]), ("all", slice(0, S.X.shape[1]))):
        R, T = l2(cond["X_ref"][:, cols]), l2(cond["X_test"][:, cols])
        DR = np.sqrt(np.maximum(2 - 2 * R @ R.T, 0))
        np.fill_diagonal(DR, np.inf)  # leave-one-out
        out[comp] = (np.sqrt(np.maximum(2 - 2 * T @ R.T, 0)), DR)
    return out


def standardise(test, ref):
    ref = ref[np.isfinite(ref)]
    return (test - ref.mean()) / ref.std()


def softmin_entropy(C, temperature):
    L = -C / temperature
    L -= L.max(axis=1, keepdims=True)
    P = np.exp(L)
    P /= P.sum(axis=1, keepdims=True)
    return -(P * np.log(P + 1e-12)).sum(axis=1)


def extra_variants(dists, y):
    """The ``extra`` variants (module docstring): name -> test scores (``dists``: :func:`component_distances`)."""
    smallest = np.unique(y, return_counts=True)[1].min()
    k5 = max(1, min(50, round(0.05 * smallest)))
    z = {}
    for comp, (D, DR) in dists.items():
        for kn, k in (("1", 1), ("5%", k5)):
            Ct, Cr = class_distances(D, y, k), class_distances(DR, y, k)
            st, sr = Ct.min(1), Cr.min(1)
            z[(comp, kn)] = standardise(st, sr)
            z[(comp, kn, "log")] = standardise(np.log(st), np.log(sr[np.isfinite(sr)]))
            srs = np.sort(sr[np.isfinite(sr)])
            p = (srs.size - np.searchsorted(srs, st, "left") + 1) / (srs.size + 1)
            z[(comp, kn, "p")] = -np.log(p)
            if kn == "1":
                t = 0.1 * np.median(srs)
                z[(comp, "entropy")] = standardise(softmin_entropy(Ct, t), softmin_entropy(Cr, t))
                ratio = lambda C: np.sort(C, 1)[:, 0] / np.sort(C, 1)[:, 1]  # noqa: E731
                z[(comp, "ratio")] = standardise(ratio(Ct), ratio(Cr))
    default = np.maximum(z[("deep", "5%")], z[("all", "5%")])
    extra = {**significance_gate(dists, y, {c: z[(c, "5%")] for c in dists}), **cleaned_reference(dists, y)}
    both = lambda key: np.maximum(z[("deep",) + key], z[("all",) + key])  # noqa: E731
    return {
        "extra: max(deep k1, all k1)": both(("1",)),
        "extra: max of deep/all x k1/k5%": np.max([z[(c, k)] for c in ("deep", "all") for k in ("1", "5%")], 0),
        "extra: log-distance z, max k5%": both(("5%", "log")),
        "extra: conformal -log p, max k5%": both(("5%", "p")),
        "extra: mean(default, class entropy)": (default + both(("entropy",))) / 2,
        "extra: mean(default, class ratio)": (default + both(("ratio",))) / 2,
        **extra,
    }


def significance_gate(dists, y, z5):
    """The default's max with a gate that also asks for significance: a component more than 0.05 below the
    other's leave-one-out 1-NN label accuracy sits out only when a one-sided exact McNemar test on the
    reference's discordant pairs (one component right, the other wrong) gives p <= 0.05. ``z5``: component ->
    the per-class z-scores at k = 5% of the smallest class (those of the default)."""
    from scipy.stats import binomtest

    right = {c: y[DR.argmin(1)] == y for c, (D, DR) in dists.items()}
    acc = {c: float(r.mean()) for c, r in right.items()}
    best = max(acc, key=acc.get)
    keep = []
    for c in dists:
        b = int(np.sum(right[best] & ~right[c]))
        n = b + int(np.sum(~right[best] & right[c]))
        worse = acc[c] < acc[best] - 0.05 and n > 0 and binomtest(b, n, 0.5, alternative="greater").pvalue <= 0.05
        if not worse:
            keep.append(c)
    return {"extra: acc-gate 0.05 only if significant (McNemar p<=0.05)": np.max([z5[c] for c in keep], axis=0)}


def cleaned_reference(dists, y):
    """k=1 per class (the anchor's k) on a cleaned reference: rows whose leave-one-out 1-NN label disagrees
    with their own on either component are dropped (they are the polluters k=1 cannot survive, but also the
    trusted images near a class border); max of the two components, standardised on the kept rows."""
    keep = np.ones(y.size, bool)
    for D, DR in dists.values():
        keep &= y[DR.argmin(1)] == y
    z = [standardise(per_class(D[:, keep], y[keep], 1), per_class(DR[np.ix_(keep, keep)], y[keep], 1))
         for D, DR in dists.values()]
    return {"extra: max(deep k1, all k1) on a cleaned reference": np.max(z, axis=0)}


def product_scores(det, cond):
    """The product default (``det``, fitted on the condition's reference) on the condition's scored set:
    ``(full score, whether its density-ratio test fired)``."""
    full = det.score_samples(cond["X_test"])
    return full, bool(det.transductive_["used"])


def variants(cond, S, fires=False):
    """name -> test scores of every variant for one condition (``fires``: the product's density-ratio test
    fired on this scored set, for the conditional variant)."""
    y = cond["y_ref"]
    smallest = np.unique(y, return_counts=True)[1].min()
    z, acc = {}, {}
    dists = component_distances(cond, S)
    for comp, (D, DR) in dists.items():
        acc[comp] = float(np.mean(y[DR.argmin(1)] == y))
        for f in FRACTIONS:
            k = max(1, min(50, round(f * smallest)))
            for search, fn in (("per-class", lambda M: per_class(M, y, k)), ("global", lambda M: kth(M, k))):
                z[(search, comp, f)] = standardise(fn(D), fn(DR))
    out = {}
    for search in ("per-class", "global"):
        for f in FRACTIONS:
            out[f"{search} deep k{f:g}"] = z[(search, "deep", f)]
            out[f"{search} all k{f:g}"] = z[(search, "all", f)]
            out[f"{search} max(deep,all) k{f:g}"] = np.maximum(z[(search, "deep", f)], z[(search, "all", f)])
            out[f"{search} mean(deep,all) k{f:g}"] = (z[(search, "deep", f)] + z[(search, "all", f)]) / 2
            best = max(acc, key=acc.get)
            out[f"{search} acc-select k{f:g}"] = z[(search, best, f)]
            if search == "per-class" and f == 0.05:
                # the max, but a component whose leave-one-out 1-NN label accuracy is more than m below
                # the other's sits out (it separates the trusted classes worse, so its distances are noisier)
                for m in ACC_MARGINS:
                    keep = [c for c in ("deep", "all") if acc[c] >= max(acc.values()) - m]
                    out[f"{search} max(deep,all) k{f:g} acc-gate {m:g}"] = np.max(
                        [z[(search, c, f)] for c in keep], axis=0)
        for fd in FRACTIONS:
            for fa in FRACTIONS:
                if fd != fa:
                    out[f"{search} max(deep k{fd:g}, all k{fa:g})"] = np.maximum(
                        z[(search, "deep", fd)], z[(search, "all", fa)])
    out.update(extra_variants(dists, y))
    # each component's z-scores averaged over k=1 and the default's 5% (per class) before the gated max
    z1 = {comp: standardise(per_class(D, y, 1), per_class(DR, y, 1)) for comp, (D, DR) in dists.items()}
    keep = [c for c in ("deep", "all") if acc[c] >= max(acc.values()) - 0.05]
    average = np.max([(z1[c] + z[("per-class", c, 0.05)]) / 2 for c in keep], axis=0)
    out["extra: mean(k1, k5%) per component, gated max"] = average
    out[CONDITIONAL] = out["per-class max(deep,all) k0.05 acc-gate 0.05"] if fires else average
    out["extra: max(default, deepest-level subspace residual)"] = np.maximum(
        out["per-class max(deep,all) k0.05 acc-gate 0.05"],
        subspace_residual_z(cond["X_ref"][:, S.slices[-1]], cond["X_test"][:, S.slices[-1]]))
    return out


def main():
    t0 = time.time()
    sources = load_sources()
    try:
        with open(RAW_RESULTS) as f:
            raw = {r["name"]: r["methods"] for r in json.load(f)["ood"]}
    except (OSError, KeyError, ValueError):
        raw = {}
    dump = sys.argv[sys.argv.index("--dump") + 1] if "--dump" in sys.argv else None
    res, names, groups, oracle, full, fired, records = {}, [], [], [], {}, [], []
    for c in ood_conditions(sources):
        if c["X_ref"] is None:
            continue
        S = sources[c["source"]]
        det = PyramidKNNDetector(level_dims=S.level_dims).fit(c["X_ref"], c["y_ref"])  # the product default
        per_name, per_full, fires_c = {}, {}, []
        for draw in c.get("draws") or [{}]:  # 'rare': the mean over the draws of the OOD images
            cd = {**c, **draw}
            product, fires = product_scores(det, cd)
            fires_c.append(fires)
            scores = variants(cd, S, fires)
            is_ood = draw.get("is_ood", c["is_ood"])
            for name, s in scores.items():
                per_name.setdefault(name, []).append(ood_metrics(s, is_ood)["auroc"])
            # with the density ratio where the test fires: the product's score there, else the pyramid part alone
            for name, s in (("default", product), ("conditional", product if fires else scores[CONDITIONAL])):
                per_full.setdefault(name, []).append(ood_metrics(s, is_ood)["auroc"])
        for name, v in per_name.items():
            res.setdefault(name, []).append(float(np.mean(v)))
        for name, v in per_full.items():
            full.setdefault(name, []).append(float(np.mean(v)))
        fired.append(fires_c)
        records.append({"name": c["name"], "group": c["group"], "fires": fires_c, "full": per_full,
                        "own": {n: per_name[n] for n in ("per-class max(deep,all) k0.05 acc-gate 0.05", CONDITIONAL,
                                                         "extra: mean(k1, k5%) per component, gated max")}})
        names.append(c["name"])
        groups.append(c["group"])
        m = raw.get(c["name"], {})
        oracle.append(max((v["auroc"] for v in m.values() if v.get("role") == "anchor" and "auroc" in v),
                          default=np.nan))
    oracle = np.array(oracle)
    G = np.array(groups)
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out(f"pyramid_knn design choices over {len(names)} OOD conditions with a trusted reference (positive = OOD, "
        "AUROC); 'loses' = more than 0.02 below the best anchor of the condition (robustness_raw.json)")
    gnames = sorted(set(groups))
    out(f"{'variant':<40} {'mean':>6} {'worst':>6} {'loses':>6}  " + " ".join(f"{g[:10]:>10}" for g in gnames)
        + "  loses in rare")
    for name, v in sorted(res.items(), key=lambda kv: -np.mean(kv[1])):
        v = np.array(v)
        ok = ~np.isnan(oracle)
        loses = int(np.sum(v[ok] < oracle[ok] - 0.02))
        rare = int(np.sum((v[ok] < oracle[ok] - 0.02)[G[ok] == "rare"]))
        out(f"{name:<40} {v.mean():>6.3f} {v.min():>6.3f} {loses:>6}  " + " ".join(
            f"{v[G == g].mean():>10.3f}" for g in gnames) + f"  {rare:>13}")
    out(f"best anchor of each condition: mean {np.nanmean(oracle):.3f}, worst {np.nanmin(oracle):.3f}")
    n_fired = sum(map(sum, fired))
    out(f"with the product's density ratio where its test fires (fired on {n_fired} of {sum(map(len, fired))} "
        f"scored sets; in every draw of {sum(all(f) for f in fired)} conditions, in none of "
        f"{sum(not any(f) for f in fired)}):")
    for label, key in (("product default (full score)", "default"), (f"{CONDITIONAL[7:]}, + ratio", "conditional")):
        v = np.array(full[key])
        ok = ~np.isnan(oracle)
        lost = v[ok] < oracle[ok] - 0.02
        out(f"{label:<40} {v.mean():>6.3f} {v.min():>6.3f} {int(lost.sum()):>6}  " + " ".join(
            f"{v[G == g].mean():>10.3f}" for g in gnames) + f"  {int(np.sum(lost[G[ok] == 'rare'])):>13}")
    if dump:
        with open(dump, "w") as f:
            json.dump({"conditions": records, "oracle": [None if np.isnan(o) else float(o) for o in oracle]}, f)
    out(f"wall time {time.time() - t0:.0f} s")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
