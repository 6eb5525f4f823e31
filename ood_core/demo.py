"""The main job: a real Fashion-MNIST dataset with known OOD samples and wrong labels.

``python -m ood_core.demo`` builds a FiftyOne dataset from Debian's
``dataset-fashion-mnist`` files (images written as PNG files), runs the
pipeline with the offline backbone and prints metrics for both tasks:

- **OOD task**: classes ``Bag`` and ``Ankle boot`` are held out. The
  ``trusted`` reference set holds only the other 8 classes; the ``test``
  samples mix those 8 classes with held-out ones. Positive class = OOD.
- **Wrong-label task**: a fraction of the untrusted in-distribution samples
  get a random other label. Scored unsupervised over all samples, evaluated
  on in-distribution samples. Positive class = label is wrong.
"""

import argparse
import gzip
import logging
import os
import struct
import sys
import time
import uuid

import numpy as np

from .errors import OODInputError, ResourceNotFoundError

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
HELD_OUT = ("Bag", "Ankle boot")
DATASET_NAME = "ood-demo-fashion-mnist"


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        ndim = magic & 0xFF
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def load_fashion_mnist(split="train", data_dir=None):
    """Return ``(images (N, 28, 28) uint8, labels (N,) uint8)`` from idx files."""
    prefix = "train" if split == "train" else "t10k"
    for d in ([data_dir] if data_dir else []) + list(FASHION_MNIST_DIRS):
        img = os.path.join(d, f"{prefix}-images-idx3-ubyte.gz")
        lab = os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz")
        if os.path.isfile(img) and os.path.isfile(lab):
            return _read_idx(img), _read_idx(lab)
    raise ResourceNotFoundError(
        "Fashion-MNIST idx files not found; install them with `apt-get install dataset-fashion-mnist` "
        "or pass data_dir=<folder with train-images-idx3-ubyte.gz ...>"
    )


def build_demo_dataset(
    *,
    num_trusted=2000,
    num_test_id=1200,
    num_test_ood=300,
    label_noise=0.1,
    seed=0,
    images_dir=None,
    name=DATASET_NAME,
    overwrite=True,
):
    """Create the demo dataset (files + FiftyOne samples); returns the dataset.

    Fields: ``ground_truth`` (Classification, possibly corrupted),
    ``true_label`` (str), ``is_ood`` (bool), ``label_is_wrong`` (bool); tags
    ``trusted`` / ``test``.
    """
    import fiftyone as fo
    from PIL import Image

    from .cache import cache_dir

    rng = np.random.default_rng(seed)
    images, labels = load_fashion_mnist("train")
    names = np.array(FASHION_MNIST_CLASSES)
    held = np.isin(names[labels], HELD_OUT)
    id_idx = rng.permutation(np.flatnonzero(~held))
    ood_idx = rng.permutation(np.flatnonzero(held))[:num_test_ood]
    trusted_idx = id_idx[:num_trusted]
    test_id_idx = id_idx[num_trusted:num_trusted + num_test_id]
    id_classes = [c for c in FASHION_MNIST_CLASSES if c not in HELD_OUT]

    images_dir = images_dir or cache_dir("demo", "fashion_mnist_images")
    os.makedirs(images_dir, exist_ok=True)

    def write(i):
        path = os.path.join(images_dir, f"train_{i:05d}.png")
        if not os.path.isfile(path):
            Image.fromarray(images[i], mode="L").save(path)
        return path

    if name in fo.list_datasets():
        if not overwrite:
            return fo.load_dataset(name)
        _refuse_replacing_a_users_dataset(fo.load_dataset(name))
    dataset = fo.Dataset(f"{name}-building-{uuid.uuid4().hex[:8]}")  # swapped in once whole (not persistent yet)
    samples = []
    noisy = set(rng.choice(test_id_idx, int(round(label_noise * len(test_id_idx))), replace=False).tolist())
    for group, idx in (("trusted", trusted_idx), ("test", test_id_idx), ("test", ood_idx)):
        for i in idx:
            true = str(names[labels[i]])
            given = true
            if true in HELD_OUT:
                given = str(rng.choice(id_classes))  # an OOD image still carries some in-distribution label
            elif int(i) in noisy:
                given = str(rng.choice([c for c in id_classes if c != true]))
            samples.append(
                fo.Sample(
                    filepath=write(int(i)),
                    tags=[group],
                    ground_truth=fo.Classification(label=given),
                    true_label=true,
                    is_ood=true in HELD_OUT,
                    label_is_wrong=(given != true) and true not in HELD_OUT,
                )
            )
    dataset.add_samples(samples, progress=False)
    dataset.info[DEMO_MARK] = True
    dataset.save()
    if name in fo.list_datasets():
        fo.delete_dataset(name)
    dataset.name = name
    dataset.persistent = True
    return dataset


#: ``dataset.info`` key marking a dataset built by :func:`build_demo_dataset` (which may replace it)
DEMO_MARK = "fiftyone_ood_demo"
_DEMO_FIELDS = {"ground_truth", "true_label", "is_ood", "label_is_wrong"}


def _refuse_replacing_a_users_dataset(existing):
    """Rebuilding replaces only a demo dataset: marked, or (built before the mark existed) with the demo's fields."""
    if existing.info.get(DEMO_MARK) or _DEMO_FIELDS <= set(existing.get_field_schema()):
        return
    raise OODInputError(
        f"a dataset named {existing.name!r} exists and was not built by the demo; the demo never replaces it. Pass "
        "another name (build_demo_dataset(name=...)), or rename that dataset")


def _stored_embeddings(view):
    """The demo's ``ood_embeddings`` of ``view`` as float32 rows, and the widths of their pyramid levels."""
    from .fo.runs import embedding_run_config
    from .fo.scores import stored_level_dims

    X = np.array(view.values("ood_embeddings"), dtype=np.float32)
    return X, stored_level_dims(embedding_run_config(view, "ood_embeddings"), X.shape[1]) or [X.shape[1]]


def _previous_defaults(dataset, test, k):
    """Scores of the earlier defaults, computed in memory: k-NN k=50 on the deepest level alone,
    ``pyramid_knn`` without the scored-set density ratio (each image scored on its own), and ``pyramid_knn``
    with the ratio's weight fixed at 1 (the last release)."""
    from .detectors import make_detector

    trusted = dataset.match_tags("trusted")
    X_ref, _ = _stored_embeddings(trusted)
    X, dims = _stored_embeddings(test)
    deepest = slice(X.shape[1] - dims[-1], X.shape[1])
    knn = make_detector("knn", k=k or 50).fit(X_ref[:, deepest]).score_samples(X[:, deepest])
    labels = trusted.values("ground_truth.label")
    kw = {} if k is None else {"k": k}
    inductive = make_detector("pyramid_knn", level_dims=list(dims), transductive="never", **kw).fit(X_ref, labels)
    fixed = make_detector("pyramid_knn", level_dims=list(dims), transductive_weight=1, **kw).fit(X_ref, labels)
    return knn, inductive.score_samples(X), fixed.score_samples(X)


def _previous_label_votes(dataset, k):
    """Two earlier wrong-label defaults, in memory: without the refitted LDA (``lda_refit=False``, the last
    release) and without the LDA at all (``lda_weight=0``, an earlier release); the same two votes and margin.

    Returns both scores in ``dataset`` order (every demo sample has an embedding and a label).
    """
    from .detectors import make_detector

    X, dims = _stored_embeddings(dataset)
    multi = len(dims) > 1
    labels = dataset.values("ground_truth.label")
    out = []
    for params in ({"lda_refit": False}, {"lda_weight": 0.0}):
        det = make_detector("weighted_label_vote", level_dims=list(dims) if multi else None,
                            levels="auto" if multi else None, **params, **({} if k is None else {"k": k}))
        out.append(det.fit_score(X, labels))
    return out


def run_demo(dataset, *, batch_size=64, num_workers=1, k=None, lof_k=None, progress=None, out=sys.stdout):
    """Run the pipeline on the demo dataset and print metrics; returns them.

    ``k`` / ``lof_k`` override the detectors' default neighbour counts
    (``None`` = the package defaults); small datasets need a smaller ``lof_k``.
    """
    import ood_core as ood

    from .metrics import format_metrics, ood_metrics

    t0 = time.time()
    emb = ood.compute_pyramid_embeddings(
        dataset, "ood_embeddings", batch_size=batch_size, num_workers=num_workers, overwrite=True, progress=progress
    )
    t_emb = time.time() - t0
    backbone = emb["config"]["backbone"]
    print(f"embedded {emb['num_embedded']} images in {t_emb:.1f} s ({emb['num_embedded'] / t_emb:.1f} images/s) "
          f"with {backbone['model_name']} ({backbone['weights']['kind']} weights), "
          f"levels {backbone['levels']}, mode={backbone['mode']}, grid={backbone['grid']}, dim={emb['dim']}",
          file=out)

    test = dataset.match_tags("test")
    # default: pyramid k-NN (per class of the trusted labels, deepest level and all levels, the larger z-score)
    ood.compute_ood_scores(test, "ood_embeddings", "ood_pyramid", reference="trusted", k=k,
                           label_field="ground_truth", overwrite=True)
    ood.compute_ood_scores(test, "ood_embeddings", "ood_knn", method="knn", reference="trusted", k=k,
                           label_field="ground_truth", overwrite=True)  # k-NN k="auto" on all levels
    # class-conditional Mahalanobis after PCA-64 (needs labels on the reference set)
    ood.compute_ood_scores(test, "ood_embeddings", "ood_mahalanobis", method="mahalanobis", reference="trusted",
                           label_field="ground_truth", reduce="pca", n_components=64, overwrite=True)
    ood.compute_label_issues(dataset, "ground_truth", "ood_embeddings", "label_issue", overwrite=True, k=k)
    ood.compute_label_issues(dataset, "ground_truth", "ood_embeddings", "label_issue_agreement",
                             method="label_agreement", k=k or 20, overwrite=True)  # the previous default
    ood.compute_label_issues(dataset, "ground_truth", "ood_embeddings", "label_issue_lof",
                             method="class_lof", k=lof_k, overwrite=True)

    results = {}
    is_ood = np.array(test.values("is_ood"), dtype=bool)
    for field in ("ood_pyramid", "ood_knn", "ood_mahalanobis"):
        results[field] = ood_metrics(np.array(test.values(field), dtype=float), is_ood)
    previous, inductive, fixed = _previous_defaults(dataset, test, k)
    results["ood_previous"] = ood_metrics(previous, is_ood)
    results["ood_pyramid_inductive"] = ood_metrics(inductive, is_ood)
    results["ood_pyramid_weight1"] = ood_metrics(fixed, is_ood)
    id_view = dataset.match({"is_ood": False})
    wrong = np.array(id_view.values("label_is_wrong"), dtype=bool)
    for field in ("label_issue", "label_issue_agreement", "label_issue_lof"):
        results[field] = ood_metrics(np.array(id_view.values(field), dtype=float), wrong)
    is_id = ~np.array(dataset.values("is_ood"), dtype=bool)
    no_refit, no_lda = _previous_label_votes(dataset, k)
    results["label_issue_no_refit"] = ood_metrics(no_refit[is_id], wrong)
    results["label_issue_no_lda"] = ood_metrics(no_lda[is_id], wrong)
    p_values = np.array(test.values("ood_pyramid_pvalue"), dtype=float)
    results["flagged_at_p05"] = {"id": float((p_values[~is_ood] <= 0.05).mean()),
                                 "ood": float((p_values[is_ood] <= 0.05).mean())}
    fitted = ood.get_ood_run_info(dataset, "ood_pyramid")["detector_fitted"]
    span = fitted.get("k_per_class")
    k_used = f"{span['min']}..{span['max']}" if span else fitted.get("k")
    ratio = fitted.get("transductive") or {}
    results["density_ratio"] = ratio

    print("\nOOD task (test split; positive = held-out class Bag/Ankle boot; fit on 'trusted'):", file=out)
    print(f"  pyramid k-NN, k={k_used} per class (default): " + format_metrics(results["ood_pyramid"]), file=out)
    if ratio:
        weight = f", weight {ratio['weight']:.2f} (effect {ratio['effect']:.1f})" if ratio.get("used") else ""
        print(f"    density ratio {'used' if ratio.get('used') else 'not used'}: permutation p = "
              f"{ratio.get('p_value')}{weight}; {ratio.get('reason')}", file=out)
    print("  the same, ratio weight fixed at 1 (last release): " + format_metrics(results["ood_pyramid_weight1"]),
          file=out)
    print("  pyramid k-NN without the density ratio: " + format_metrics(results["ood_pyramid_inductive"]),
          file=out)
    print("  k-NN k=auto, all levels:       " + format_metrics(results["ood_knn"]), file=out)
    print("  k-NN k=50, deepest level (previous default): " + format_metrics(results["ood_previous"]), file=out)
    print("  Mahalanobis, PCA-64 (labels):  " + format_metrics(results["ood_mahalanobis"]), file=out)
    print(f"  calibrated: p <= 0.05 flags {100 * results['flagged_at_p05']['id']:.1f}% of in-distribution test "
          f"images and {100 * results['flagged_at_p05']['ood']:.1f}% of OOD ones", file=out)
    print("\nWrong-label task (in-distribution samples; positive = corrupted label):", file=out)
    wrong = dict(positive="wrong label", negative="correct label")
    print("  weighted label votes (default):       " + format_metrics(results["label_issue"], **wrong), file=out)
    print("  without the refit (lda_refit=False):  " + format_metrics(results["label_issue_no_refit"], **wrong),
          file=out)
    print("  without the LDA (lda_weight=0):       " + format_metrics(results["label_issue_no_lda"], **wrong),
          file=out)
    print("  label agreement k=20 (previous):      " + format_metrics(results["label_issue_agreement"], **wrong),
          file=out)
    print("  per-class LOF (paper):                " + format_metrics(results["label_issue_lof"], **wrong), file=out)

    ood.compute_ood_visualization(dataset, "ood_embeddings", "ood_umap", overwrite=True)
    results["seconds"] = time.time() - t0
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-trusted", type=int, default=2000)
    parser.add_argument("--num-test-id", type=int, default=1200)
    parser.add_argument("--num-test-ood", type=int, default=300)
    parser.add_argument("--label-noise", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    t0 = time.time()
    dataset = build_demo_dataset(
        num_trusted=args.num_trusted, num_test_id=args.num_test_id,
        num_test_ood=args.num_test_ood, label_noise=args.label_noise,
    )
    print(f"built dataset {dataset.name!r}: {len(dataset)} samples "
          f"({len(dataset.match_tags('trusted'))} trusted, {len(dataset.match_tags('test'))} test) "
          f"in {time.time() - t0:.1f} s")
    run_demo(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
    print(f"\ntotal wall time {time.time() - t0:.1f} s")
    print(
        "\nOpen it in the App:\n"
        "  .venv/bin/python -c \"import fiftyone as fo; "
        f"s = fo.launch_app(fo.load_dataset('{dataset.name}')); s.wait()\"\n"
        "then sort by 'ood_pyramid' (the default OOD score) or 'label_issue' (descending) and colour the "
        "'ood_umap' Embeddings panel by them."
    )


if __name__ == "__main__":
    main()
