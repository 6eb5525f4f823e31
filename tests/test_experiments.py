"""Paper workflows on datasets with synthetic embeddings whose right answer is known."""

import os

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve

import ood_core as ood
from ood_core import levels as level_slicing
from ood_core.detectors import KNNDetector, LabelAgreementDetector, LOFDetector
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs
from ood_core.metrics import ood_metrics

D = 16
# A fake pooled pyramid: three levels with 4, 6 and 8 channels at grid 1 (dim 18).
BACKBONE = {"model_name": "fake", "levels": ["l0", "l1", "l2"], "level_indices": [1, 2, 3],
            "channels": [4, 6, 8], "mode": "pool", "grid": 1, "dim": 18}
BLOCKS = {"l0": slice(0, 4), "l1": slice(4, 10), "l2": slice(10, 18)}


def _make(dataset_factory, X, is_ood, tags, backbone=None, **fields):
    import fiftyone.core.fields as fof

    ds = dataset_factory([f"/tmp/syn_{i}.png" for i in range(len(X))], tags=tags)
    if is_ood is not None:
        ds.set_values("is_ood", [bool(v) for v in is_ood])
    for name, values in fields.items():
        ds.set_values(name, values)
    fo_runs.write_and_record(ds, [("emb", [x.astype(np.float32) for x in X], fof.VectorField)], "emb",
                             kind="embeddings", embeddings_field="emb", patches_field=None, backbone=backbone)
    return ds


def _rows(table, **match):
    return [r for r in table if all(r[k] == v for k, v in match.items())]


@pytest.fixture
def polluted(dataset_factory):
    """200 trusted ID samples, 100 test ID, 200 OOD samples in 10 tight clusters off the ID direction."""
    rng = np.random.default_rng(0)
    mu = np.zeros(D)
    mu[0] = 4.0
    ref = mu + rng.standard_normal((200, D))
    test_id = mu + rng.standard_normal((100, D))
    centres = rng.standard_normal((10, D))
    centres[:, 0] = 0.0
    centres = 4.0 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
    ood = np.concatenate([c + 0.5 * rng.standard_normal((20, D)) for c in centres])
    X = np.concatenate([ref, test_id, ood])
    is_ood = np.r_[np.zeros(300, bool), np.ones(200, bool)]
    tags = [["trusted"]] * 200 + [["test"]] * 300
    return _make(dataset_factory, X, is_ood, tags), X, is_ood


def test_pollution_hurts_k1_far_more_than_k10(polluted):
    ds, X, is_ood = polluted
    before = (set(ds.get_field_schema()), ds.list_runs())
    table = ood.pollution_sweep(ds, "emb", reference="trusted", fractions=(0, 0.02, 0.05, 0.1),
                                        k=(1, 10), seed=0)
    assert (set(ds.get_field_schema()), ds.list_runs()) == before  # wrote nothing
    assert [(r["fraction"], r["k"]) for r in table] == [(f, k) for f in (0, 0.02, 0.05, 0.1) for k in (1, 10)]
    for bad, match in ((dict(fractions=("a",)), "fractions="), (dict(fractions=None), "fractions="),
                       (dict(seed="x"), "seed='x'")):
        with pytest.raises(OODInputError, match=match):
            ood.pollution_sweep(ds, "emb", reference="trusted", **{"fractions": (0,), **bad})
    # n = round(f * 200 / (1 - f)) OOD samples join the 200 trusted ones
    assert [r["num_polluting"] for r in table[::2]] == [0, 4, 11, 22]
    assert table[-1]["pollution_share"] == pytest.approx(22 / 222)
    assert all(r["num_ood"] == 200 - 22 and r["num_id"] == 100 for r in table)  # same evaluation set per row

    auroc = {(r["fraction"], r["k"]): r["auroc"] for r in table}
    drop_k1 = auroc[0, 1] - auroc[0.1, 1]
    drop_k10 = auroc[0, 10] - auroc[0.1, 10]
    assert auroc[0, 1] > 0.97 and auroc[0, 10] > 0.97
    assert drop_k1 > 0.2 and drop_k10 < 0.05 and drop_k1 > drop_k10 + 0.2
    assert auroc[0.02, 1] >= auroc[0.1, 1]

    df = table.to_dataframe()
    assert list(df["k"]) == [1, 10] * 4 and "auroc" in df.columns
    assert table.info["positive_class"] == "OOD (is_ood == True)"


def test_pollution_rows_match_an_independent_computation(polluted):
    ds, X, is_ood = polluted
    pool = ds.match({"is_ood": True}).limit(11)  # all 11 drawn at f=0.05: the evaluation set is known
    pool.tag_samples("pool")
    table = ood.pollution_sweep(ds, "emb", reference="trusted", ood_pool="pool", fractions=(0, 0.05),
                                        k=3, run_key="sweep")
    in_pool = np.array(["pool" in t for t in ds.values("tags")])
    ref = np.arange(500) < 200
    evaluate = ~ref & ~in_pool
    for row, X_fit in ((table[0], X[ref]), (table[1], np.concatenate([X[ref], X[in_pool]]))):
        scores = KNNDetector(k=3).fit(X_fit).score_samples(X[evaluate])
        assert row["auroc"] == pytest.approx(ood_metrics(scores, is_ood[evaluate])["auroc"])
        assert row["fpr95"] == pytest.approx(ood_metrics(scores, is_ood[evaluate])["fpr95"])
    stored = fo_runs.load_ood_results(ds, "sweep")
    assert fo_runs.get_ood_run_info(ds, "sweep")["kind"] == "experiment" and stored.rows == list(table)
    with pytest.raises(OODInputError, match="OOD pool has only 11"):
        ood.pollution_sweep(ds, "emb", reference="trusted", ood_pool="pool", fractions=(0.1,))


@pytest.fixture
def layered(dataset_factory):
    """Signal only in level l1's block; l0 and l2 are noise. 60 trusted, 40 ID + 40 OOD to evaluate."""
    rng = np.random.default_rng(3)
    n_ref, n_id, n_ood = 60, 40, 40
    X = rng.standard_normal((n_ref + n_id + n_ood, 18))
    X[:, BLOCKS["l1"]] += 3.0  # ID direction of l1
    X[n_ref + n_id:, 4:7] -= rng.uniform(2.0, 4.0, size=(n_ood, 1))  # OOD: l1 shifted by a varying amount
    is_ood = np.r_[np.zeros(n_ref + n_id, bool), np.ones(n_ood, bool)]
    tags = [["trusted"]] * n_ref + [["test"]] * (n_id + n_ood)
    return _make(dataset_factory, X, is_ood, tags, backbone=BACKBONE), X, is_ood


def test_config_sweep_rows_and_values(layered):
    ds, X, is_ood = layered
    table = ood.config_sweep(ds, "emb", reference="trusted", level_subsets=[["l0"], ["l1"], [2, 3], "all"],
                                     dims=(None, 3, 500), k=(1, 5))
    assert len(table) == 4 * 3 * 2
    assert [r["levels"] for r in table[::6]] == ["l0", "l1", "l1+l2", "l0+l1+l2"]
    assert [r["dim_in"] for r in table[::6]] == [4, 6, 14, 18]
    assert [(r["n_components"], r["k"]) for r in table[:6]] == [
        (None, 1), (None, 5), (3, 1), (3, 5), (500, 1), (500, 5)]
    assert table[6]["level_indices"] == [2]
    # more PCA dims than reference samples: the setting is reported, not fatal
    bad = _rows(table, n_components=500)
    assert all(r["error"] and "n_components" in r["error"] and r["auroc"] is None for r in bad)

    ref, test = np.arange(140) < 60, np.arange(140) >= 60
    cols = BLOCKS["l1"]
    want = ood_metrics(KNNDetector(k=5).fit(X[ref][:, cols]).score_samples(X[test][:, cols]), is_ood[test])
    got = _rows(table, levels="l1", n_components=None, k=5)[0]
    assert got["auroc"] == pytest.approx(want["auroc"]) and got["aupr_in"] == pytest.approx(want["aupr_in"])
    pca = PCA(3, random_state=0).fit(X[ref][:, 4:18])
    want = ood_metrics(KNNDetector(k=1).fit(pca.transform(X[ref][:, 4:18])).score_samples(
        pca.transform(X[test][:, 4:18])), is_ood[test])
    assert _rows(table, levels="l1+l2", n_components=3, k=1)[0]["auroc"] == pytest.approx(want["auroc"], abs=1e-6)
    # the level that carries the signal wins over the noise level
    assert _rows(table, levels="l1", n_components=None, k=5)[0]["auroc"] > 0.9
    assert _rows(table, levels="l0", n_components=None, k=5)[0]["auroc"] < 0.75

    default = ood.config_sweep(ds, "emb", reference="trusted", methods=("knn", "mahalanobis"), k=(3,))
    assert [r["levels"] for r in default[::2]] == ["l0", "l0+l1", "l0+l1+l2", "l1", "l1+l2", "l2"]
    assert [(r["method"], r["k"]) for r in default[:2]] == [("knn", 3), ("mahalanobis", None)]
    with pytest.raises(OODInputError, match="not among the stored levels"):
        ood.config_sweep(ds, "emb", reference="trusted", level_subsets=[["l9"]])


def test_level_slices_equal_combining_only_those_levels():
    import torch

    from ood_core.features import combine_levels

    g = torch.Generator().manual_seed(0)
    maps = [torch.rand(3, c, s, s, generator=g) for c, s in ((4, 8), (6, 4), (8, 2))]
    backbone = {"levels": ["a", "b", "c"], "level_indices": [0, 1, 2], "channels": [4, 6, 8]}
    for mode, grid in (("pool", 2), ("flatten", 1)):
        full = combine_levels(maps, mode, grid).numpy()
        for subset in (["b"], ["a", "c"], ["b", "c"]):
            cols = level_slicing.level_columns(backbone, full.shape[1], subset)
            chosen = [maps["abc".index(name)] for name in subset]
            if mode == "flatten":  # flatten resizes to the deepest stored level, which is "c" here
                chosen = [torch.nn.functional.adaptive_avg_pool2d(m, 2) for m in chosen]
            np.testing.assert_allclose(full[:, cols], combine_levels(chosen, mode, grid).numpy(), rtol=1e-6)
    with pytest.raises(OODInputError, match="not a multiple"):
        level_slicing.level_columns(backbone, 19, ["a"])


def test_channels_come_from_timm_when_an_old_config_lacks_them():
    old = {"model_name": "tf_efficientnet_lite0", "levels": ["blocks.1", "blocks.2", "blocks.3"],
           "level_indices": [1, 2, 3]}
    blocks = level_slicing.level_blocks(old, 24 + 40 + 112)
    assert [(b[0], b[3] - b[2]) for b in blocks] == [("blocks.1", 24), ("blocks.2", 40), ("blocks.3", 112)]


def test_auto_config_picks_the_best_config_on_validation(layered):
    ds, X, is_ood = layered
    rng = np.random.default_rng(0)
    val_rows = np.sort(rng.choice(np.arange(60, 140), 30, replace=False))
    ids = np.array(ds.values("id"))
    validation = ds.select(ids[val_rows].tolist())
    out = ood.auto_config(ds, "emb", validation=validation, reference="trusted",
                                  level_subsets=[["l0"], ["l1"], ["l0", "l1", "l2"]], dims=(None, 2), k=(1, 5, 20))
    table = out["table"]
    assert len(table) == 3 * 2 * 3

    # recompute every configuration independently and check the winner is the first best one
    ref = np.arange(140) < 60
    y = is_ood[val_rows]
    recomputed = []
    for levels in (["l0"], ["l1"], ["l0", "l1", "l2"]):
        cols = np.concatenate([np.arange(BLOCKS[name].start, BLOCKS[name].stop) for name in levels])
        for dim in (None, 2):
            A, B = X[ref][:, cols], X[val_rows][:, cols]
            if dim:
                pca = PCA(dim, random_state=0).fit(A)
                A, B = pca.transform(A), pca.transform(B)
            for k in (1, 5, 20):
                recomputed.append(roc_auc_score(y, KNNDetector(k=k).fit(A).score_samples(B)))
    np.testing.assert_allclose([r["auroc"] for r in table], recomputed, atol=1e-6)
    best_index = int(np.argmax(recomputed))  # first of equal maxima, like auto_config's tie rule
    assert out["best"] == table[best_index] and out["best"]["auroc"] == pytest.approx(max(recomputed))
    assert out["best"]["levels"] != "l0" and out["best"]["auroc"] > 0.95  # the noise-only level never wins
    assert len(set(np.round(recomputed, 6))) > 3  # the choice is not a tie between everything

    info = fo_runs.get_ood_run_info(ds, "auto_config")
    assert info["kind"] == "auto_config" and info["metric"] == "auroc"
    assert info["best_config"]["k"] == out["best"]["k"]
    assert info["best_config"]["level_indices"] == out["best"]["level_indices"]
    assert fo_runs.load_ood_results(ds, "auto_config").best == out["best"]
    with pytest.raises(OODInputError, match="already exists"):
        ood.auto_config(ds, "emb", validation=validation, reference="trusted")

    # applying the winner scores the validation samples exactly as during the search
    ood.score_with_config(ds, "auto_score", "auto_config")
    scores = np.array(validation.values("auto_score"))
    assert roc_auc_score(y, scores) == pytest.approx(out["best"]["auroc"])
    assert fo_runs.get_ood_run_info(ds, "auto_score")["levels"] == out["best"]["levels"]
    # calibrated like every OOD run: p = (1 + trusted samples scoring at least as high) / (n_trusted + 1), the
    # trusted samples' own scores self-excluded (as the scored trusted samples get)
    trusted = np.array(ds.match_tags("trusted").values("auto_score"))
    every = np.array(ds.values("auto_score"))
    expected = [(1 + np.sum(trusted >= s)) / (len(trusted) + 1) for s in every]
    np.testing.assert_allclose(ds.values("auto_score_pvalue"), expected)
    assert fo_runs.get_ood_run_info(ds, "auto_score")["calibration"]["num_reference"] == len(trusted)
    # experiments never replace a run of another kind, even with overwrite; a malformed config is named
    for call in (lambda: ood.auto_config(ds, "emb", validation=validation, reference="trusted", run_key="auto_score",
                                         overwrite=True),
                 lambda: ood.config_sweep(ds, "emb", reference="trusted", run_key="auto_config", overwrite=True)):
        with pytest.raises(OODInputError, match="overwrite=True replaces only a run of the same kind"):
            call()
    assert fo_runs.get_ood_run_info(ds, "auto_score")["kind"] == "ood_scores"
    with pytest.raises(OODInputError, match="is not an auto_config config"):
        ood.score_with_config(ds, "s2", {})
    # parameter grids that cannot mean what they say are named (they ran silently or failed deep inside)
    for bad, match in ((dict(reduce=None, dims=(5,)), "reduce=None"), (dict(level_subsets=[]), "level_subsets=\\[\\]"),
                       (dict(level_subsets="l1"), "level_subsets='l1'"), (dict(seed="x"), "seed='x'")):
        with pytest.raises(OODInputError, match=match):
            ood.config_sweep(ds, "emb", reference="trusted", **bad)


def test_experiment_records_keep_config_and_results_together_through_a_failure(layered, monkeypatch):
    """Recording a table wrote the config, then the results: a failure between them left the new config with the
    old results (overwrite), or a new record without results that a retry could not replace."""
    import fiftyone.core.collections as foc

    from fault_helpers import Crash, FaultAt

    ds, _, _ = layered
    small = dict(reference="trusted", level_subsets=[["l1"]], k=(1, 5))
    first = ood.auto_config(ds, "emb", validation=ds.skip(60), **small)

    def consistent():
        info, res = fo_runs.get_ood_run_info(ds, "auto_config"), fo_runs.load_ood_results(ds, "auto_config")
        assert info["best_config"]["k"] == res.best["k"] and info["search_space"]["k"] == sorted({r["k"] for r in
                                                                                             res.rows})
        return info

    with monkeypatch.context() as m:
        FaultAt(m, 1, [(foc.SampleCollection, "save_run_results")])
        with pytest.raises(Crash):
            ood.auto_config(ds, "emb", validation=ds.skip(60), overwrite=True, **dict(small, k=(10, 20)))
    ds.reload()
    assert consistent()["search_space"]["k"] == [1, 5] and first["best"]["k"] in (1, 5)  # the old run, whole
    with monkeypatch.context() as m:
        FaultAt(m, 1, [(foc.SampleCollection, "save_run_results")])
        with pytest.raises(Crash):
            ood.config_sweep(ds, "emb", reference="trusted", level_subsets=[["l1"]], k=(3,), run_key="sweep")
    ds.reload()
    assert "sweep" not in ood.list_ood_runs(ds)  # no record without its table ...
    ood.config_sweep(ds, "emb", reference="trusted", level_subsets=[["l1"]], k=(3,), run_key="sweep")  # ... a retry
    assert [r["k"] for r in fo_runs.load_ood_results(ds, "sweep").rows] == [3]


@pytest.fixture
def mislabeled(dataset_factory):
    """Three classes in three clusters; class 'a' and 'b' each have 4 flipped labels, 'c' none."""
    rng = np.random.default_rng(5)
    names = np.repeat(["a", "b", "c"], 30)
    centres = {"a": np.eye(D)[0] * 5, "b": np.eye(D)[1] * 5, "c": np.eye(D)[2] * 5}
    X = np.stack([centres[n] + rng.standard_normal(D) for n in names])
    given = names.copy()
    flip = np.r_[0:4, 30:34]
    given[flip[:4]] = "b"
    given[flip[4:]] = "a"
    ds = _make(dataset_factory, X, None, None, true_label=names.tolist(), label_is_wrong=(given != names).tolist())
    import fiftyone as fo

    ds.set_values("ground_truth", [fo.Classification(label=str(g)) for g in given])
    return ds, X, given, names


def test_label_error_report_per_class(mislabeled):
    ds, X, given, names = mislabeled
    table = ood.label_error_report(ds, "ground_truth", "emb", k=5, gt_field="label_is_wrong")
    scores = LabelAgreementDetector(k=5).fit_score(X, given.astype(object))
    wrong = given != names
    assert {r["class"] for r in table} == {"a", "b", "c"}
    assert [r["mean_score"] for r in table] == sorted((r["mean_score"] for r in table), reverse=True)
    for row in table:
        rows = given == row["class"]
        assert row["count"] == rows.sum()
        assert row["mean_score"] == pytest.approx(scores[rows].mean())
        assert row["num_wrong"] == wrong[rows].sum()
        if wrong[rows].any():
            assert row["auroc"] == pytest.approx(roc_auc_score(wrong[rows], scores[rows]))
            assert row["auroc"] > 0.9
        else:
            assert row["auroc"] is None
    assert _rows(table, **{"class": "c"})[0]["num_wrong"] == 0
    assert table.info["positive_class"].startswith("label is wrong")

    # the true class names give the same table; so do stored scores of the paper's per-class LOF
    assert ood.label_error_report(ds, "ground_truth", "emb", k=5, gt_field="true_label") == table
    lof = LOFDetector(k=5, per_class=True).fit_score(X, given.astype(object))
    ds.set_values("lof_score", lof.tolist())
    by_field = ood.label_error_report(ds, "ground_truth", score_field="lof_score", gt_field="label_is_wrong")
    computed = ood.label_error_report(ds, "ground_truth", "emb", method="class_lof", k=5,
                                              gt_field="label_is_wrong")
    assert [r["class"] for r in by_field] == [r["class"] for r in computed]
    for a, b in zip(by_field, computed):
        assert a["mean_score"] == pytest.approx(b["mean_score"]) and a["auroc"] == b["auroc"]
    # fields of the wrong kind are named (a float "truth" read every label as wrong; a vector as scores)
    with pytest.raises(OODInputError, match="gt_field 'lof_score' is a FloatField"):
        ood.label_error_report(ds, "ground_truth", "emb", k=5, gt_field="lof_score")
    # class indices cannot be compared with class names: 0 and 1 were read as flags, the rest as wrong labels
    ds.set_values("gt_index", [["a", "b", "c"].index(n) for n in names])
    with pytest.raises(OODInputError, match="gt_field 'gt_index' holds numbers other than 0 / 1"):
        ood.label_error_report(ds, "ground_truth", "emb", k=5, gt_field="gt_index")
    # flags written as strings share no name with the classes: every label would have counted as wrong
    ds.set_values("wrong_text", ["yes" if w else "no" for w in wrong])
    with pytest.raises(OODInputError, match=r"gt_field 'wrong_text' holds \['no', 'yes'\], none of them a class"):
        ood.label_error_report(ds, "ground_truth", "emb", k=5, gt_field="wrong_text")
    ds.set_values("wrong_01", [int(w) for w in wrong])  # 0 / 1 flags: the same table as the booleans
    assert ood.label_error_report(ds, "ground_truth", "emb", k=5, gt_field="wrong_01") == table
    with pytest.raises(OODInputError, match="score_field 'emb' is a VectorField"):
        ood.label_error_report(ds, "ground_truth", score_field="emb")
    with pytest.raises(OODInputError, match="score_field 'nope' does not exist"):
        ood.label_error_report(ds, "ground_truth", score_field="nope")


def test_plots_and_save_figure(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0, 1, 50), rng.normal(2, 1, 30)]
    is_ood = np.r_[np.zeros(50, bool), np.ones(30, bool)]
    fig = ood.plot_roc_pr(scores, is_ood)
    fpr, tpr, _ = roc_curve(is_ood, scores)
    np.testing.assert_allclose(fig.data[0].x, fpr)
    np.testing.assert_allclose(fig.data[0].y, tpr)
    assert f"{roc_auc_score(is_ood, scores):.3f}" in fig.layout.annotations[0].text

    # a histogram of one class is a normal use (in-distribution samples only); bad settings are named
    assert len(ood.plot_score_histogram(scores[:50], is_ood[:50]).data) == 2
    for bad, match in ((dict(nbins=0), "nbins=0"), (dict(threshold="high"), "threshold='high' is not a number")):
        with pytest.raises(OODInputError, match=match):
            ood.plot_score_histogram(scores, is_ood, **bad)
    with pytest.raises(OODInputError, match="is_ood must be boolean .* \\[None\\]"):
        ood.plot_roc_pr([0.1, 0.2, 0.3, 0.4], [False, None, True, True])
    hist = ood.plot_score_histogram(scores, is_ood, threshold=1.5)
    assert len(hist.data[0].x) == 50 and len(hist.data[1].x) == 30
    assert hist.layout.shapes[0].x0 == 1.5

    written = ood.save_figure(fig, tmp_path / "plots" / "roc.png")
    assert written["html"] == str(tmp_path / "plots" / "roc.html") and os.path.getsize(written["html"]) > 10_000
    try:
        import kaleido  # noqa: F401
        has_kaleido = True
    except ImportError:
        has_kaleido = False
    assert (written["png"] is not None) == has_kaleido
    assert ood.save_figure(fig, tmp_path / "plots" / "roc.png") == written  # its own files are replaced
    (tmp_path / "notes.html").write_text("my notes")  # a file of the user's beside the PNG asked for
    with pytest.raises(OODInputError, match=r"notes.html' exists and was not written by save_figure.*another path"):
        ood.save_figure(fig, tmp_path / "notes.png")
    assert (tmp_path / "notes.html").read_text() == "my notes"
    assert ood.save_figure(fig, tmp_path / "notes.html")["html"] == str(tmp_path / "notes.html")  # named: replaced
    # what is not a figure, a file path or a plotly.js choice is named
    for bad, named in (((None, tmp_path / "x.html"), "fig is a NoneType, not a plotly figure"),
                       ((fig, None), "path=None is not a file path"), ((fig, 5), "path=5 is not a file path"),
                       ((fig, tmp_path), "is not a file path"),
                       ((fig, tmp_path / "notes.html" / "x.html"), r"its folder .* cannot be created"),  # a file
                       ((fig, tmp_path / "y.html", "bogus"), "include_plotlyjs='bogus' is not valid")):
        with pytest.raises(OODInputError, match=named):
            ood.save_figure(*bad[:2], **({"include_plotlyjs": bad[2]} if len(bad) > 2 else {}))
    assert not {"None.html", "5.html", "y.html"} & set(os.listdir(tmp_path)) and not os.path.exists("None.html")
    # interrupted while rendering or while writing: the earlier figure stays whole (it was emptied first)
    import plotly.graph_objects as go

    import ood_core.plots as plots

    before, listing = (tmp_path / "notes.html").read_bytes(), sorted(os.listdir(tmp_path))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def half_written(path, text):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text[:100])
        raise KeyboardInterrupt

    for target, fake in ((go.Figure, "to_html"), (plots, "_write_text")):
        with monkeypatch.context() as m:
            m.setattr(target, fake, interrupted if fake == "to_html" else half_written)
            with pytest.raises(KeyboardInterrupt):
                ood.save_figure(fig, tmp_path / "notes.html")
        assert (tmp_path / "notes.html").read_bytes() == before and sorted(os.listdir(tmp_path)) == listing
    with pytest.raises(OODInputError, match="both classes"):
        ood.plot_roc_pr(scores, np.zeros(80, bool))
