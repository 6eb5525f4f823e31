"""Misuse of the paper-experiment SDK (:mod:`ood_core.fo.experiments`) and independent checks of the metrics."""

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError


def _dataset(dataset_factory, n=40):
    """``n`` samples, 15 tagged 'trusted' (no ground truth), the rest alternating ID / OOD in ``is_ood``; random
    8-d embeddings in 'emb'."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/exp_misuse_{i}.png" for i in range(n)],
                         tags=[["trusted"] if i < 15 else [] for i in range(n)])
    ds.set_values("emb", list(rng.normal(size=(n, 8)).astype(np.float32)))
    ds.set_values("is_ood", [None] * 15 + [bool(i % 2) for i in range(15, n)])
    return ds


def test_pollution_sweep_refuses_k_none_for_a_k_method(dataset_factory):
    """k=None used to run k-NN with a hidden default k while every row reported k=None (config_sweep refuses it)."""
    ds = _dataset(dataset_factory)
    with pytest.raises(OODInputError, match=r"k=None.*integer >= 1"):
        ood.pollution_sweep(ds, "emb", reference="trusted", fractions=(0.0,), k=None)
    with pytest.raises(OODInputError, match=r"integer >= 1"):
        ood.pollution_sweep(ds, "emb", reference="trusted", fractions=(0.0,), k=(3, None))
    assert "experiment" not in str(ood.list_ood_runs(ds))


def test_pollution_sweep_with_numpy_k_records_its_run(dataset_factory):
    """k=np.int64(3) (e.g. from np.arange) with a run_key used to run the whole sweep, then fail to store it with a
    raw 'int64 is not JSON serializable'; the rows now hold Python ints, match config_sweep, and the run is stored."""
    ds = _dataset(dataset_factory)
    pol = ood.pollution_sweep(ds, "emb", reference="trusted", fractions=(0.0,), k=np.arange(3, 4), run_key="pol")
    cfg = ood.config_sweep(ds, "emb", reference="trusted", k=(3,))
    assert pol[0]["k"] == 3 and type(pol[0]["k"]) is int
    assert pol[0]["auroc"] == pytest.approx(cfg[0]["auroc"])
    assert "pol" in ood.list_ood_runs(ds)


def test_fpr95_and_auroc_match_scikit_learn_on_ties_and_tiny_sets():
    """fpr95 / fpr95_openood / auroc against roc_curve / roc_auc_score on tiny sets with many tied scores."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from ood_core.metrics import ood_metrics

    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(400):
        n = int(rng.integers(2, 12))
        s = rng.integers(0, 4, n).astype(float)
        y = rng.integers(0, 2, n).astype(bool)
        if y.all() or not y.any():
            continue
        m = ood_metrics(s, y)
        fpr, tpr, _ = roc_curve(~y, -s, drop_intermediate=False)  # ID positive: accepted = score <= t
        assert m["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)  # OOD positive: flagged = score >= t
        assert m["fpr95_openood"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
        assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
        checked += 1
    assert checked > 300


def test_numpy_seed_dims_and_n_components_are_recorded(dataset_factory):
    """NumPy ints for seed / dims / n_components (e.g. from np.arange) used to run the whole experiment, then fail
    to store it with a raw 'int64 is not JSON serializable'; now the runs are stored with Python numbers."""
    ds = _dataset(dataset_factory)
    cfg = ood.config_sweep(ds, "emb", reference="trusted", dims=np.arange(4, 5), seed=np.int64(1), run_key="cfg")
    pol = ood.pollution_sweep(ds, "emb", reference="trusted", fractions=(0.0,), reduce="pca",
                              n_components=np.int64(4), seed=np.int64(1), run_key="pol")
    best = ood.auto_config(ds, "emb", validation=ds.exists("is_ood"), reference="trusted", dims=np.arange(4, 5),
                           k=np.arange(3, 5), seed=np.int64(1), reduce="pca")
    assert {"cfg", "pol", "auto_config"} <= set(ood.list_ood_runs(ds))
    assert cfg[0]["n_components"] == 4 and type(cfg[0]["n_components"]) is int
    assert pol[0]["n_components"] == 4 and type(pol.info["seed"]) is int
    assert best["config"]["seed"] == 1 and type(best["config"]["seed"]) is int
    # same numbers as the call with Python ints
    again = ood.config_sweep(ds, "emb", reference="trusted", dims=(4,), seed=1)
    assert cfg[0]["auroc"] == pytest.approx(again[0]["auroc"])


def test_pollution_sweep_refuses_n_components_without_reduce(dataset_factory):
    """n_components=4 with reduce=None used to be ignored silently while every row reported n_components=4
    (unreduced metrics labelled as 4-d); config_sweep refuses the same combination."""
    ds = _dataset(dataset_factory)
    with pytest.raises(OODInputError, match=r"n_components=4.*reduce=None"):
        ood.pollution_sweep(ds, "emb", reference="trusted", fractions=(0.0,), n_components=4, run_key="pol")
    assert "pol" not in ood.list_ood_runs(ds)


def test_evaluating_a_p_value_field_as_a_score_is_refused(dataset_factory):
    """'<score>_pvalue' (small = more OOD) passed as the score used to give silently inverted metrics with
    positive_class 'positive'; it is now refused, naming the run to evaluate instead."""
    from sklearn.metrics import roc_auc_score

    ds = _dataset(dataset_factory)
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3, reference="trusted")
    with pytest.raises(OODInputError, match=r"'s_pvalue'.*p-value.*run 's'"):
        ood.evaluate_ood_run(ds, "s_pvalue", gt_field="is_ood")
    m = ood.evaluate_ood_run(ds, "s", gt_field="is_ood")  # the run itself still evaluates, as sklearn does
    view = ds.exists("is_ood")
    assert m["auroc"] == pytest.approx(roc_auc_score(view.values("is_ood"), view.values("s")))
    assert m["positive_class"] == "ood"


def test_the_ground_truth_field_as_the_score_is_refused(dataset_factory):
    # evaluate_ood_run(ds, "is_ood", gt_field="is_ood") measured the ground truth against itself: AUROC 1.0, silently
    ds = dataset_factory([f"/tmp/gt_self_{i}.png" for i in range(20)])
    ds.set_values("is_ood", [i % 4 == 0 for i in range(20)])
    with pytest.raises(OODInputError, match=r"gt_field='is_ood' is the field being evaluated"):
        ood.evaluate_ood_run(ds, "is_ood", gt_field="is_ood")
