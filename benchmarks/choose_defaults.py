#!/usr/bin/env python
"""Choose the product's defaults from measurements on the real demo data.

Reproduces the demo split of :mod:`ood_core.demo` (Fashion-MNIST train set,
"Bag" and "Ankle boot" held out as OOD, 2000 trusted ID, 1200 test ID with 10%
wrong labels, 300 test OOD; seed 0) as numpy arrays, without FiftyOne. Runs the
backbone once over every image, derives several embedding variants from the
same feature maps, and evaluates:

- **OOD task** (positive = OOD): k-NN fitted on the trusted set, scoring the
  1500 test samples; level subsets x pooling x k, Mahalanobis, PCA-64 and
  UMAP-30. Also with the reference "polluted" by 100 extra held-out images
  (~5% of the reference; images not in the test set) to show how fragile small
  k is.
- **Wrong-label task** (positive = corrupted label): fitted unsupervised over
  all 3500 demo samples with their given labels (OOD samples carry a random ID
  label, as in the demo), evaluated over the 3200 ID samples.

Run from the repository root, with the allocator settings of docs/OFFLINE.md::

    MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 \\
        .venv/bin/python benchmarks/choose_defaults.py | tee benchmarks/results/choose_defaults.txt

Feature arrays are cached in ``~/.cache/fiftyone-ood/bench`` (or
``$FIFTYONE_OOD_CACHE_DIR/bench``, 1.6 GB); ``--no-cache`` recomputes them.

Runtime on the 2-core build machine (shared with other jobs): backbone pass
~1-3 min, evaluation ~11-12 min, of which UMAP ~4 min (``--skip-umap`` drops it)
and the 62,720-dim flatten variants most of the rest.
"""

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from ood_core.demo import FASHION_MNIST_CLASSES, HELD_OUT, load_fashion_mnist  # noqa: E402
from ood_core.detectors import make_detector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402
from ood_core.reduction import make_reducer  # noqa: E402

GRIDS = (1, 2, 4)
FLATTEN_SETS = ((0, 1, 2), (0, 1, 2, 3))
LEVEL_SUBSETS = ((0, 1, 2), (1, 2, 3), (2, 3, 4), (1, 2, 3, 4), (0, 1, 2, 3, 4), (3, 4), (4,))
KNN_KS = (1, 5, 10, 50)
LA_KS = (5, 10, 20, 50)
LOF_KS = (10, 20, 50)
NUM_POLLUTION = 100  # extra held-out images added to the reference for the "polluted" column
MAHALANOBIS_RAW_MAX_DIM = 1280  # above this, Mahalanobis is only run after PCA (LW + eigh get slow)


# --------------------------------------------------------------------------- data


def demo_split(num_trusted=2000, num_test_id=1200, num_test_ood=300, label_noise=0.1, seed=0,
               num_pollution=NUM_POLLUTION):
    """The demo's sample selection, exactly as ``ood_core.demo.build_demo_dataset`` draws it.

    Same generator, same calls in the same order. Returns a dict of arrays in the
    demo's sample order (trusted, test ID, test OOD), plus ``pollution_idx``:
    held-out images that come after the demo's OOD images in the same permutation
    (so they are never test samples).
    """
    rng = np.random.default_rng(seed)
    images, labels = load_fashion_mnist("train")
    names = np.array(FASHION_MNIST_CLASSES)
    held = np.isin(names[labels], HELD_OUT)
    id_idx = rng.permutation(np.flatnonzero(~held))
    ood_perm = rng.permutation(np.flatnonzero(held))
    ood_idx = ood_perm[:num_test_ood]
    trusted_idx = id_idx[:num_trusted]
    test_id_idx = id_idx[num_trusted:num_trusted + num_test_id]
    id_classes = [c for c in FASHION_MNIST_CLASSES if c not in HELD_OUT]
    noisy = set(rng.choice(test_id_idx, int(round(label_noise * len(test_id_idx))), replace=False).tolist())

    index, given, true_l, is_ood, wrong, trusted = [], [], [], [], [], []
    for group, idx in (("trusted", trusted_idx), ("test", test_id_idx), ("test", ood_idx)):
        for i in idx:
            true = str(names[labels[i]])
            g = true
            if true in HELD_OUT:
                g = str(rng.choice(id_classes))
            elif int(i) in noisy:
                g = str(rng.choice([c for c in id_classes if c != true]))
            index.append(int(i))
            given.append(g)
            true_l.append(true)
            is_ood.append(true in HELD_OUT)
            wrong.append(g != true and true not in HELD_OUT)
            trusted.append(group == "trusted")
    return {
        "images": images,
        "index": np.array(index, np.int64),
        "given": np.array(given, dtype=object),
        "true": np.array(true_l, dtype=object),
        "is_ood": np.array(is_ood, bool),
        "wrong": np.array(wrong, bool),
        "trusted": np.array(trusted, bool),
        "pollution_idx": ood_perm[num_test_ood:num_test_ood + num_pollution].astype(np.int64),
    }


# --------------------------------------------------------------------------- features


def extract_variants(images_u8, model_name, batch_size):
    """One backbone pass; returns ``{key: (N, D) float32}`` embedding blocks.

    Keys: ``g{grid}_l{level}`` (one pooled level), ``flat_{a-b-c}`` (paper mode
    over a level set). Pooled per-level blocks concatenated in level order are
    exactly ``combine_levels(subset, "pool", grid)``.
    """
    import torch
    from PIL import Image

    from ood_core.features import PyramidExtractor, combine_levels

    ext = PyramidExtractor(model_name, levels=None, mode="pool", grid=1)
    model, transform = ext.model, ext.transform
    n = len(images_u8)
    out = {}
    t0 = time.time()
    t_decode = 0.0
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            e = min(s + batch_size, n)
            td = time.time()
            x = torch.stack([transform(Image.fromarray(a, mode="L").convert("RGB")) for a in images_u8[s:e]])
            t_decode += time.time() - td
            feats = model(x)
            blocks = {}
            for g in GRIDS:
                for lvl, f in enumerate(feats):
                    blocks[f"g{g}_l{lvl}"] = combine_levels([f], "pool", g)
            for ls in FLATTEN_SETS:
                blocks["flat_" + "-".join(map(str, ls))] = combine_levels([feats[i] for i in ls], "flatten")
            for key, t in blocks.items():
                if key not in out:
                    out[key] = np.empty((n, t.shape[1]), np.float32)
                out[key][s:e] = t.float().numpy()
            if (s // batch_size) % 20 == 0:
                print(f"  extracted {e}/{n} images ({e / (time.time() - t0):.1f} images/s)", flush=True)
    secs = time.time() - t0
    info = {
        "model": model_name,
        "levels": ext.level_names,
        "channels": ext.channels,
        "reductions": ext.reductions,
        "weights": ext.weights_source.get("kind"),
        "seconds": secs,
        "preprocess_seconds": t_decode,
    }
    return out, info


def load_or_extract(split, model_name, batch_size, cache_path, use_cache):
    idx = np.concatenate([split["index"], split["pollution_idx"]])
    if use_cache and os.path.isfile(cache_path):
        with np.load(cache_path, allow_pickle=False) as z:
            if np.array_equal(z["_index"], idx) and str(z["_model"]) == model_name:
                arrays = {k: z[k] for k in z.files if not k.startswith("_")}
                print(f"loaded cached features from {cache_path} (the backbone pass took {float(z['_seconds']):.0f} s "
                      "when they were computed)")
                return arrays, {"model": model_name, "cached": True, "seconds": float(z["_seconds"])}
        print("cache does not match this split/model; recomputing")
    print(f"extracting {len(idx)} images with {model_name} (batch {batch_size}) ...", flush=True)
    arrays, info = extract_variants(split["images"][idx], model_name, batch_size)
    print(f"  done: {info['seconds']:.1f} s ({len(idx) / info['seconds']:.1f} images/s; "
          f"preprocessing {info['preprocess_seconds']:.1f} s of it); levels {info['levels']}, "
          f"channels {info['channels']}, reductions {info['reductions']}, {info['weights']} weights")
    if use_cache:
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        tmp = cache_path + ".tmp.npz"
        np.savez(tmp, _index=idx, _model=np.array(model_name), _seconds=np.array(info["seconds"]), **arrays)
        os.replace(tmp, cache_path)
        print(f"  cached to {cache_path} ({os.path.getsize(cache_path) / 1e6:.0f} MB)")
    return arrays, info


def variant(arrays, levels, pooling):
    """Embeddings for a level subset and pooling ("g1"/"g2"/"g4"/"flat")."""
    if pooling == "flat":
        return arrays["flat_" + "-".join(map(str, levels))]
    return np.concatenate([arrays[f"{pooling}_l{lvl}"] for lvl in levels], axis=1)


def lv(levels):
    return "[" + ",".join(map(str, levels)) + "]"


# --------------------------------------------------------------------------- evaluation helpers


def reduce_pair(method, n_components, X_ref, X):
    """As the product does it: fit_transform on the reference, transform the scored set."""
    red = make_reducer(method, n_components, seed=0)
    return red.fit_transform(X_ref), red.transform(X)


def _search(det, X, k):
    """k nearest neighbours through a fitted detector's own index (X=None: fitted set, self excluded)."""
    if hasattr(det, "neighbors_"):  # ood_core.neighbors.NeighborIndex
        return det.neighbors_.kneighbors(X, k=k)
    return det.nn_.kneighbors(X, n_neighbors=k)  # earlier detectors: a scikit-learn NearestNeighbors


def knn_multi(X_ref, X, ks, normalize=True):
    """``{k: KNNDetector(k).fit(X_ref).score_samples(X)}`` for several k with one search.

    Uses the fitted detector's own normalisation and neighbour index (checked
    against the public per-k API in :func:`sanity_checks`).
    """
    kmax = max(ks)
    det = make_detector("knn", k=kmax, normalize=normalize).fit(X_ref)
    dist, _ = _search(det, det._prepare(np.ascontiguousarray(X, np.float32), "scored"), kmax)
    return {k: dist[:, k - 1].astype(np.float64) for k in ks}


def label_agreement_multi(X, y, ks):
    """``{k: LabelAgreementDetector(k).fit_score(X, y)}`` for several k with one search."""
    kmax = max(ks)
    det = make_detector("label_agreement", k=kmax)
    det.fit(X, y)
    _, idx = _search(det, None, kmax)  # leave-one-out, as fit_score does
    codes = det.codes_
    return {k: 1.0 - (codes[idx[:, :k]] == codes[:, None]).sum(1) / k for k in ks}


def metric_row(scores, positive):
    m = ood_metrics(scores, positive)
    return {"auroc": m["auroc"], "fpr95": m["fpr95"], "aupr_out": m["aupr_out"]}


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def print_table(rows, columns, title, top=None, sort_key="auroc", reverse=True):
    rows = sorted(rows, key=lambda r: r[sort_key], reverse=reverse)
    if top:
        rows = rows[:top]
    print(f"\n{title}")
    if not rows:
        print("  (no rows)")
        return
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  " + "  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  " + "  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in columns))


def print_pivot(rows, col_key, value, title, col_values, row_keys=("levels", "pool")):
    cells = {(tuple(r[k] for k in row_keys), r[col_key]): r[value] for r in rows}
    keys = list(dict.fromkeys(tuple(r[k] for k in row_keys) for r in rows))
    print(f"\n{title}")
    print("  " + "  ".join(k.rjust(11) for k in row_keys) + "  " + "  ".join(
        f"{col_key}={c}".rjust(8) for c in col_values))
    for key in keys:
        vals = [cells.get((key, c)) for c in col_values]
        print("  " + "  ".join(str(k).rjust(11) for k in key) + "  " + "  ".join(
            (f"{v:.4f}" if v is not None else "-").rjust(8) for v in vals))


def mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else float("nan")


# --------------------------------------------------------------------------- sanity checks


def sanity_checks(X_ref, X, y_all, X_all):
    """The shortcuts above vs the public detector API, and the detectors vs plain numpy."""
    multi = knn_multi(X_ref, X, KNN_KS)
    err_multi = max(float(np.abs(multi[k] - make_detector("knn", k=k).fit(X_ref).score_samples(X)).max())
                    for k in KNN_KS)
    la_multi = label_agreement_multi(X_all, y_all, LA_KS)
    err_la_multi = max(float(np.abs(la_multi[k] - make_detector("label_agreement", k=k).fit_score(X_all, y_all)).max())
                       for k in LA_KS)

    def unit(A):
        A = A.astype(np.float64)
        return A / np.linalg.norm(A, axis=1, keepdims=True)

    R, Q = unit(X_ref), unit(X)
    d = np.sqrt(np.maximum(2 - 2 * Q @ R.T, 0))
    k = 10
    err_knn = float(np.abs(np.sort(d, axis=1)[:, k - 1] - multi[k]).max())
    A = unit(X_all)
    dd = np.sqrt(np.maximum(2 - 2 * A @ A.T, 0))
    np.fill_diagonal(dd, np.inf)
    nn = np.argsort(dd, axis=1, kind="stable")[:, :k]
    codes = np.unique(y_all.astype(str), return_inverse=True)[1]
    ref_la = 1 - (codes[nn] == codes[:, None]).mean(1)
    mismatch = int((np.abs(ref_la - la_multi[k]) > 1e-9).sum())
    print(f"sanity: one-search k-NN vs public score_samples per k: max |diff| {err_multi:.1e}; one-search label "
          f"agreement vs public fit_score per k: max |diff| {err_la_multi:.1e}")
    print(f"sanity: package k-NN (k=10) vs plain numpy: max |diff| {err_knn:.1e}; package label agreement (k=10) vs "
          f"plain numpy: {mismatch} of {len(ref_la)} scores differ (only ties at the k-th distance may differ)")


# --------------------------------------------------------------------------- main


def parse_levels(text):
    return tuple(int(x) for x in text.strip("[]").split(","))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-cache", action="store_true", help="recompute features, do not read/write the cache")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--top", type=int, default=15, help="rows of the sorted tables")
    parser.add_argument("--skip-umap", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*n_jobs value.*")
    warnings.filterwarnings("ignore", message=".*gradient function.*")
    import logging

    logging.getLogger("timm").setLevel(logging.ERROR)

    import torch

    t_start = time.time()
    print("choose_defaults: feature-pyramid defaults measured on the demo split (Fashion-MNIST, seed 0)")
    print(f"machine: {os.cpu_count()} cpus, python {platform.python_version()}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        print(f"  {var}={os.environ.get(var, '(unset)')}")

    split = demo_split()
    n_demo = len(split["index"])
    tr, te = split["trusted"], ~split["trusted"]
    is_ood_test = split["is_ood"][te]
    n_poll = len(split["pollution_idx"])
    print(f"split: {tr.sum()} trusted ID, {(te & ~split['is_ood']).sum()} test ID "
          f"({split['wrong'].sum()} wrong labels), {split['is_ood'].sum()} test OOD; +{n_poll} extra held-out "
          f"images (not test samples) for the polluted-reference columns ({n_poll / (tr.sum() + n_poll):.1%} of "
          "that reference)")

    cache_root = args.cache_dir or os.path.join(
        os.environ.get("FIFTYONE_OOD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "fiftyone-ood"),
        "bench")
    cache_path = os.path.join(cache_root, f"choose_defaults_{args.model}_seed0_{n_demo}+{NUM_POLLUTION}.npz")
    arrays, info = load_or_extract(split, args.model, args.batch_size, cache_path, not args.no_cache)

    # Rows [0, n_demo) are the demo samples in demo order; the rest is the pollution set.
    demo_rows = np.arange(n_demo)
    ref_rows = demo_rows[tr]
    test_rows = demo_rows[te]
    polluted_rows = np.concatenate([ref_rows, np.arange(n_demo, n_demo + n_poll)])
    id_mask = ~split["is_ood"]
    wrong_id = split["wrong"][id_mask]
    y_all = split["given"]
    y_ref = y_all[tr]
    # Pollution images carry a random ID label, like the demo's OOD samples (for Mahalanobis).
    id_classes = [c for c in FASHION_MNIST_CLASSES if c not in HELD_OUT]
    y_polluted = np.concatenate([y_ref, np.random.default_rng(1).choice(id_classes, n_poll).astype(object)])

    configs = [(ls, p) for ls in LEVEL_SUBSETS for p in ("g1", "g2", "g4")] + [(ls, "flat") for ls in FLATTEN_SETS]

    def emb(ls, p):
        return variant(arrays, ls, p)

    X0 = emb((1, 2, 3, 4), "g1")
    sanity_checks(X0[ref_rows], X0[test_rows], y_all, X0[demo_rows])

    # ================================================================ OOD task
    t0 = time.time()
    knn_rows, maha_rows, red_rows = [], [], []
    for ls, p in configs:
        E = emb(ls, p)
        base = {"levels": lv(ls), "pool": p, "dim": E.shape[1]}
        X_ref, X_test, X_poll = E[ref_rows], E[test_rows], E[polluted_rows]
        clean, polluted = knn_multi(X_ref, X_test, KNN_KS), knn_multi(X_poll, X_test, KNN_KS)
        for k in KNN_KS:
            r = dict(base, reduce="none", detector="knn", k=k, **metric_row(clean[k], is_ood_test))
            r["auroc_polluted"] = metric_row(polluted[k], is_ood_test)["auroc"]
            knn_rows.append(r)
        if E.shape[1] <= MAHALANOBIS_RAW_MAX_DIM:
            s = make_detector("mahalanobis").fit(X_ref, y_ref).score_samples(X_test)
            r = dict(base, reduce="none", detector="mahalanobis", k=None, **metric_row(s, is_ood_test))
            r["auroc_polluted"] = metric_row(make_detector("mahalanobis").fit(X_poll, y_polluted)
                                             .score_samples(X_test), is_ood_test)["auroc"]
            maha_rows.append(r)
        R_ref, R_test = reduce_pair("pca", 64, X_ref, X_test)
        for k, s in knn_multi(R_ref, R_test, (10, 50)).items():
            red_rows.append(dict(base, reduce="pca64", detector="knn", k=k, **metric_row(s, is_ood_test)))
        s = make_detector("mahalanobis").fit(R_ref, y_ref).score_samples(R_test)
        maha_rows.append(dict(base, reduce="pca64", detector="mahalanobis", k=None, **metric_row(s, is_ood_test)))
    # Polluted reference for the best PCA-64 Mahalanobis configs (the PCA is refitted on that reference).
    top_maha = sorted((r for r in maha_rows if r["reduce"] == "pca64"), key=lambda r: r["auroc"], reverse=True)[:5]
    for r in top_maha:
        E = emb(parse_levels(r["levels"]), r["pool"])
        R_ref, R_test = reduce_pair("pca", 64, E[polluted_rows], E[test_rows])
        r["auroc_polluted"] = metric_row(make_detector("mahalanobis").fit(R_ref, y_polluted).score_samples(R_test),
                                         is_ood_test)["auroc"]
    # PCA dimension for Mahalanobis on the two best configs.
    for r in top_maha[:2]:
        E = emb(parse_levels(r["levels"]), r["pool"])
        for nc in (16, 32, 128):
            R_ref, R_test = reduce_pair("pca", nc, E[ref_rows], E[test_rows])
            s = make_detector("mahalanobis").fit(R_ref, y_ref).score_samples(R_test)
            maha_rows.append(dict(levels=r["levels"], pool=r["pool"], dim=r["dim"], reduce=f"pca{nc}",
                                  detector="mahalanobis", k=None, **metric_row(s, is_ood_test)))
    print(f"\n[OOD sweep: {len(knn_rows) + len(maha_rows) + len(red_rows)} evaluations in {time.time() - t0:.1f} s]")

    cols = ["levels", "pool", "dim", "reduce", "detector", "k", "auroc", "fpr95", "aupr_out", "auroc_polluted"]
    print_table(knn_rows, cols, f"OOD task, k-NN on raw embeddings: top {args.top} by AUROC (positive = OOD; fit on "
                "2000 trusted, score 1500 test; auroc_polluted = same with 100 held-out images added to the reference)",
                top=args.top)
    print_pivot(knn_rows, "k", "auroc", "OOD AUROC, k-NN on raw embeddings (rows: levels x pooling)", KNN_KS)
    print_pivot(knn_rows, "k", "auroc_polluted", "OOD AUROC, k-NN raw, polluted reference (4.8% OOD)", KNN_KS)
    print_pivot(knn_rows, "k", "fpr95", "OOD FPR95 (OOD accepted at 95% ID accepted; lower is better), k-NN raw",
                KNN_KS)
    print_table(maha_rows, cols, f"OOD task, class-conditional Mahalanobis (Ledoit-Wolf; fitted with the trusted "
                f"labels; raw only up to {MAHALANOBIS_RAW_MAX_DIM} dims): top {args.top}", top=args.top)
    print_table(red_rows, cols[:-1], f"OOD task, k-NN after PCA to 64 dims (fit on trusted): top {args.top}",
                top=args.top)

    # UMAP-30 on the two best pooled k-NN configs of <= 2048 dims (ranked at k=50) + the paper's flatten [0,1,2]
    # (the paper's best DelftBikes setting: first 3 levels, UMAP to 30 dims).
    # "inductive" = the product's path (fit on the trusted set, transform the test set);
    # "transductive" = one UMAP fitted on trusted + test together (no labels used).
    umap_rows = []
    if not args.skip_umap:
        t0 = time.time()
        k50 = {(r["levels"], r["pool"]): r["auroc"] for r in knn_rows
               if r["k"] == 50 and r["pool"] != "flat" and r["dim"] <= 2048}
        umap_cfgs = [(parse_levels(c[0]), c[1]) for c in sorted(k50, key=k50.get, reverse=True)[:2]]
        umap_cfgs += [((0, 1, 2), "flat")]
        for ls, p in umap_cfgs:
            E = emb(ls, p)
            # The flatten fit takes minutes (62,720 dims); it runs only the product's (inductive) path.
            for fit in ("inductive",) if p == "flat" else ("inductive", "transductive"):
                tu = time.time()
                if fit == "inductive":
                    R_ref, R_test = reduce_pair("umap", 30, E[ref_rows], E[test_rows])
                else:
                    Z = make_reducer("umap", 30, seed=0).fit_transform(E[np.concatenate([ref_rows, test_rows])])
                    R_ref, R_test = Z[:len(ref_rows)], Z[len(ref_rows):]
                secs = round(time.time() - tu, 1)
                for normalize in (True, False):
                    for k, s in knn_multi(R_ref, R_test, (10, 50), normalize=normalize).items():
                        umap_rows.append({"levels": lv(ls), "pool": p, "dim": E.shape[1], "reduce": "umap30",
                                          "fit": fit, "detector": "knn", "k": k, "normalize": normalize,
                                          "umap_s": secs, **metric_row(s, is_ood_test)})
        print(f"\n[UMAP: {len({(r['levels'], r['pool'], r['fit']) for r in umap_rows})} fits in "
              f"{time.time() - t0:.1f} s]")
        print_table(umap_rows, ["levels", "pool", "dim", "reduce", "fit", "k", "normalize", "auroc", "fpr95",
                                "umap_s"],
                    "OOD task, UMAP to 30 dims then k-NN. fit=inductive: fitted on trusted, test transformed (the "
                    "product's reduce='umap'); fit=transductive: fitted on trusted + test together. normalize=True is "
                    "the product's k-NN default (L2-normalised UMAP coordinates)")

    # ================================================================ wrong-label task
    t0 = time.time()
    la_rows, lof_rows = [], []
    for ls, p in configs:
        E = emb(ls, p)[demo_rows]
        for k, s in label_agreement_multi(E, y_all, LA_KS).items():
            la_rows.append({"levels": lv(ls), "pool": p, "dim": E.shape[1], "reduce": "none",
                            "detector": "label_agreement", "k": k, **metric_row(s[id_mask], wrong_id)})
    la_mean = {}
    for r in la_rows:
        la_mean.setdefault((r["levels"], r["pool"]), []).append(r["auroc"])
    ranked = sorted(la_mean, key=lambda c: mean(la_mean[c]), reverse=True)
    k50 = {(r["levels"], r["pool"]): r["auroc"] for r in knn_rows if r["k"] == 50}
    best_ood_cfgs = sorted(k50, key=k50.get, reverse=True)
    sweep = list(dict.fromkeys(ranked[:2] + best_ood_cfgs[:1] + [("[1,2,3,4]", "g1"), ("[0,1,2]", "flat")]))
    for c in sweep:
        E = emb(parse_levels(c[0]), c[1])[demo_rows]
        # Per-class LOF on the 62,720-dim flatten embeddings takes ~40 s per k: only k=50 (best everywhere).
        for k in (50,) if c[1] == "flat" else LOF_KS:
            s = make_detector("class_lof", k=k).fit_score(E, y_all)
            lof_rows.append({"levels": c[0], "pool": c[1], "dim": E.shape[1], "reduce": "none",
                             "detector": "class_lof", "k": k, **metric_row(s[id_mask], wrong_id)})
    red_la = []
    reducers = [("pca", 64)] + ([] if args.skip_umap else [("umap", 30)])
    for i, c in enumerate(ranked[:2]):
        E = emb(parse_levels(c[0]), c[1])[demo_rows]
        for method, nc in reducers[:1] if i else reducers:
            R = make_reducer(method, nc, seed=0).fit_transform(E)
            for k, s in label_agreement_multi(R, y_all, (10, 20)).items():
                red_la.append({"levels": c[0], "pool": c[1], "dim": E.shape[1], "reduce": f"{method}{nc}",
                               "detector": "label_agreement", "k": k, **metric_row(s[id_mask], wrong_id)})
    print(f"\n[wrong-label sweep: {len(la_rows) + len(lof_rows) + len(red_la)} evaluations in "
          f"{time.time() - t0:.1f} s]")

    lcols = ["levels", "pool", "dim", "reduce", "detector", "k", "auroc", "fpr95", "aupr_out"]
    ttl = ("(positive = corrupted label; fitted on all 3500 demo samples with their given labels, evaluated on "
           "the 3200 ID samples, 120 positives)")
    print_table(la_rows, lcols, f"Wrong-label task, label agreement on raw embeddings: top {args.top} by AUROC {ttl}",
                top=args.top)
    print_pivot(la_rows, "k", "auroc", "Wrong-label AUROC, label agreement by k (all variants)", LA_KS)
    print_pivot(lof_rows, "k", "auroc", "Wrong-label AUROC, per-class LOF (paper Exp. 3) by k", LOF_KS)
    print_table(red_la, lcols, "Wrong-label task, label agreement after PCA-64 (two best variants) / UMAP-30 "
                "(best variant), fitted on all 3500 samples")

    # ================================================================ recommendation
    pool_knn = [r for r in knn_rows if r["pool"] != "flat"]
    k_all = {k: (mean([r["auroc"] for r in pool_knn if r["k"] == k]),
                 mean([r["auroc_polluted"] for r in pool_knn if r["k"] == k])) for k in KNN_KS}
    top5 = best_ood_cfgs[:5]
    k_top = {k: (mean([r["auroc"] for r in knn_rows if r["k"] == k and (r["levels"], r["pool"]) in top5]),
                 mean([r["auroc_polluted"] for r in knn_rows if r["k"] == k and (r["levels"], r["pool"]) in top5]))
             for k in KNN_KS}
    k_knn = max(KNN_KS, key=lambda k: k_top[k][0] + k_top[k][1])
    la_k = {k: mean([r["auroc"] for r in la_rows if r["k"] == k]) for k in LA_KS}
    la_k_top = {k: mean([r["auroc"] for r in la_rows if r["k"] == k and (r["levels"], r["pool"]) in ranked[:5]])
                for k in LA_KS}
    k_la = max(LA_KS, key=lambda k: la_k[k] + la_k_top[k])

    # One embedding field serves both tasks in the product: rank variants on both.
    joint = []
    for c in la_mean:
        ood = next(r for r in knn_rows if (r["levels"], r["pool"]) == c and r["k"] == k_knn)
        la = next(r for r in la_rows if (r["levels"], r["pool"]) == c and r["k"] == k_la)
        joint.append({"levels": c[0], "pool": c[1], "dim": ood["dim"], "ood_auroc": ood["auroc"],
                      "ood_polluted": ood["auroc_polluted"], "ood_fpr95": ood["fpr95"],
                      "label_auroc": la["auroc"], "label_fpr95": la["fpr95"],
                      "sum": ood["auroc"] + ood["auroc_polluted"] + la["auroc"]})
    print_table(joint, ["levels", "pool", "dim", "ood_auroc", "ood_polluted", "ood_fpr95", "label_auroc",
                        "label_fpr95", "sum"],
                f"Joint view: k-NN k={k_knn} OOD AUROC (clean, polluted) + label agreement k={k_la} AUROC, "
                "sorted by their sum", sort_key="sum")
    best = max(joint, key=lambda r: r["sum"])
    best_ood = max(knn_rows, key=lambda r: r["auroc"])
    best_la = max(la_rows, key=lambda r: r["auroc"])
    best_lof = max(lof_rows, key=lambda r: r["auroc"])
    best_maha = max(maha_rows, key=lambda r: r["auroc"])

    def raw_knn(levels, pool, k):
        return next(r["auroc"] for r in knn_rows if (r["levels"], r["pool"], r["k"]) == (levels, pool, k))

    def raw_la(levels, pool, k):
        return next(r["auroc"] for r in la_rows if (r["levels"], r["pool"], r["k"]) == (levels, pool, k))

    pca_delta = [r["auroc"] - raw_knn(r["levels"], r["pool"], r["k"]) for r in red_rows]
    umap_delta = [r["auroc"] - raw_knn(r["levels"], r["pool"], r["k"]) for r in umap_rows
                  if r["fit"] == "inductive"]
    umap_delta_tr = [r["auroc"] - raw_knn(r["levels"], r["pool"], r["k"]) for r in umap_rows
                     if r["fit"] == "transductive"]
    la_red_delta = {m: [r["auroc"] - raw_la(r["levels"], r["pool"], r["k"]) for r in red_la if r["reduce"] == m]
                    for m in {r["reduce"] for r in red_la}}

    print("\nk-NN k (mean OOD AUROC clean / polluted reference):")
    print("  all pooled variants: " + ", ".join(f"k={k} {a:.4f}/{b:.4f}" for k, (a, b) in k_all.items()))
    print("  top-5 variants:      " + ", ".join(f"k={k} {a:.4f}/{b:.4f}" for k, (a, b) in k_top.items()))
    print("label agreement k (mean wrong-label AUROC, all variants / top-5): "
          + ", ".join(f"k={k} {la_k[k]:.4f}/{la_k_top[k]:.4f}" for k in LA_KS))

    print(f"\n================ recommended defaults ({args.model}) ================")
    mode = "mode='flatten'" if best["pool"] == "flat" else f"mode='pool', grid={best['pool'][1:]}"
    print(f"  embedding:        levels {best['levels']}, {mode} (dim {best['dim']}): OOD AUROC {best['ood_auroc']:.4f} "
          f"(k={k_knn}; {best['ood_polluted']:.4f} with a polluted reference), wrong-label AUROC "
          f"{best['label_auroc']:.4f} (k={k_la})")
    compact = min((r for r in joint if r["sum"] >= best["sum"] - 0.015), key=lambda r: r["dim"])
    if compact is not best:
        cmode = "mode='flatten'" if compact["pool"] == "flat" else f"mode='pool', grid={compact['pool'][1:]}"
        print(f"  compact option:   levels {compact['levels']}, {cmode} (dim {compact['dim']}): OOD AUROC "
              f"{compact['ood_auroc']:.4f} ({compact['ood_polluted']:.4f} polluted), wrong-label AUROC "
              f"{compact['label_auroc']:.4f} (smallest variant within 0.015 of the best joint sum)")
    print(f"  knn k:            {k_knn} (best mean of clean + polluted AUROC over the top-5 variants)")
    print(f"  label_agreement k: {k_la} (best mean AUROC over all + top-5 variants)")
    print(f"  best single rows: OOD k-NN {best_ood['levels']} {best_ood['pool']} k={best_ood['k']} AUROC "
          f"{best_ood['auroc']:.4f} (polluted {best_ood['auroc_polluted']:.4f}); label agreement {best_la['levels']} "
          f"{best_la['pool']} k={best_la['k']} AUROC {best_la['auroc']:.4f}; per-class LOF {best_lof['levels']} "
          f"{best_lof['pool']} k={best_lof['k']} AUROC {best_lof['auroc']:.4f}")
    print(f"  Mahalanobis:      best {best_maha['levels']} {best_maha['pool']} reduce={best_maha['reduce']} AUROC "
          f"{best_maha['auroc']:.4f} (polluted {_fmt(best_maha.get('auroc_polluted'))}) vs best k-NN "
          f"{best_ood['auroc']:.4f}")
    print(f"  PCA-64 + k-NN vs raw k-NN (same variant and k): mean dAUROC {mean(pca_delta):+.4f} "
          f"(min {min(pca_delta):+.4f}, max {max(pca_delta):+.4f})")
    if umap_delta:
        best_tr = max((r for r in umap_rows if r["fit"] == "transductive"), key=lambda r: r["auroc"])
        print(f"  UMAP-30 + k-NN vs raw k-NN: inductive (product path) mean dAUROC {mean(umap_delta):+.4f} "
              f"(min {min(umap_delta):+.4f}, max {max(umap_delta):+.4f}); transductive mean "
              f"{mean(umap_delta_tr):+.4f} (max {max(umap_delta_tr):+.4f}; best {best_tr['levels']} "
              f"{best_tr['pool']} k={best_tr['k']} normalize={best_tr['normalize']} AUROC {best_tr['auroc']:.4f})")
    for m, d in sorted(la_red_delta.items()):
        print(f"  {m} + label agreement vs raw: mean dAUROC {mean(d):+.4f}")
    helps = [m for m, d in [("pca64", pca_delta), ("umap30 inductive", umap_delta)] if d and mean(d) > 0.005]
    print(f"  reduction default: {'none (neither PCA nor the inductive UMAP improves k-NN on average)' if not helps else helps}")
    extraction = "cached" if info.get("cached") else f"{info['seconds']:.1f} s"
    cpu = os.times()
    print(f"\ntotal wall time {time.time() - t_start:.1f} s (feature extraction {extraction}); CPU time "
          f"{cpu.user:.0f} s user + {cpu.system:.0f} s system; load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes share the 2 cores)")


if __name__ == "__main__":
    main()
