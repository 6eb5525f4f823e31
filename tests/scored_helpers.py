"""A small scored dataset shared by the run-lifecycle tests (``tests/test_lifecycle.py``, ``tests/test_run_links.py``)."""

import numpy as np

import ood_core as ood


def scored_dataset(dataset_factory, name):
    """30 samples (``/tmp/<name>_<i>.png``, never read), 10 tagged 'trusted', random embeddings 'emb'; k-NN score run
    's' (with 's_pvalue') against the trusted samples and its flags run 's_flag' tagging 5 samples 'look'."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/{name}_{i}.png" for i in range(30)],
                         tags=[["trusted"] if i < 10 else [] for i in range(30)])
    ds.set_values("emb", list(rng.normal(size=(30, 8)).astype(np.float32)))
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3, reference="trusted")
    ood.flag_samples(ds, "s", rule="top_n", value=5, tag="look")
    return ds
