"""Misuse named: what a user gets wrong is refused with the input, the problem and the fix, not a raw library
error from deep inside (found by calling every public function with the usual mistakes)."""

import os

import numpy as np
import pytest

import ood_core as ood
from ood_core.detectors import make_detector
from ood_core.errors import OODInputError


@pytest.fixture
def vectors(dataset_factory):
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/misuse_{i}.png" for i in range(30)])
    ds.set_values("vec", list(rng.normal(size=(30, 8)).astype(np.float32)))
    ds.set_values("one_d", [np.array([float(i)]) for i in range(30)])
    ds.skip(15).tag_samples("trusted")
    return ds


def test_score_calls_name_bad_fields_reducers_and_reference_views(vectors):
    ds = vectors
    for bad, named in ((dict(embeddings_field=["vec"]), r"embeddings_field=\['vec'\] is not a field name"),
                       (dict(embeddings_field=None), "embeddings_field=None is not a field name"),
                       (dict(label_field=["gt"]), r"label_field=\['gt'\] is not a field name"),
                       (dict(reduce="bogus"), "reduce='bogus' is not a reducer; pass one of"),
                       (dict(reduce="pca", n_components=0), "n_components=0 is not valid")):
        kw = dict(dict(embeddings_field="vec"), **bad)
        with pytest.raises(OODInputError, match=named):
            ood.compute_ood_scores(ds, kw.pop("embeddings_field"), "s", **kw)
    assert "s" not in ood.list_ood_runs(ds)
    import fiftyone as fo

    ds.set_values("cls", [fo.Classification(label="a")] * len(ds))
    ds.set_values("words", [["a", "b"]] * len(ds))
    for field in ("cls", "words"):
        with pytest.raises(OODInputError, match=f"field '{field}' does not hold embedding vectors"):
            ood.compute_ood_scores(ds, field, "s")
    with pytest.raises(OODInputError, match=r"label_field=\['cls'\] is not a field name"):
        ood.compute_label_issues(ds, ["cls"], "vec", "li")
    # a reference view hiding the embeddings (the App's field visibility) is read with every field
    out = ood.compute_ood_scores(ds, "vec", "s", method="knn", k=2, reference=ds.match_tags("trusted")
                                 .exclude_fields("vec"))
    assert out["num_scored"] == 30
    assert ood.get_ood_run_info(ds, "s")["reference"]["num_samples"] == 15


def test_run_admin_names_what_is_not_a_dataset_a_key_or_a_kind(vectors):
    ds = vectors
    ood.compute_ood_scores(ds, "vec", "s", method="knn", k=2)
    for call, named in ((lambda: ood.list_ood_runs(None), "samples=None is a NoneType, not a FiftyOne dataset"),
                        (lambda: ood.repair_ood_runs("my-dataset"), "samples='my-dataset' is a str, not a FiftyOne"),
                        (lambda: ood.list_ood_runs(ds, kind="bogus"), "unknown run kind 'bogus'"),
                        (lambda: ood.list_ood_runs(ds, kind=["flags"]), r"unknown run kind \['flags'\]; kinds are"),
                        (lambda: ood.delete_ood_run(ds, None), "run_key=None is not a run key; pass the key as a "
                                                              "string, e.g. 's'"),
                        (lambda: ood.get_ood_run_info(ds, 5), "run_key=5 is not a run key"),
                        (lambda: ood.delete_ood_run(ds, "s", delete_fields="no"), "delete_fields='no' is not valid")):
        with pytest.raises(OODInputError, match=named):
            call()
    assert ood.list_ood_runs(ds) == ["s"] and ds.get_field("s") is not None  # delete_fields="no" deleted it


def test_maps_name_a_field_without_vectors_and_a_bad_seed(vectors):
    ds = vectors
    for field, kw, named in (("filepath", {}, "'filepath' does not hold embedding vectors of at least 2 numbers "
                                              r"\(its first value is a str\)"),
                             ("one_d", {}, "'one_d' does not hold embedding vectors of at least 2 numbers"),
                             ("vec", dict(seed="x"), "seed='x' is not valid; pass a whole number")):
        with pytest.raises(OODInputError, match=named):
            ood.compute_ood_visualization(ds, field, "map", method="pca", **kw)
    assert "map" not in ds.list_brain_runs()


def test_arrays_devices_and_cache_folders_are_named(tmp_path):
    with pytest.raises(OODInputError, match=r"reference embeddings has rows of different lengths \(\[1, 2\]\)"):
        make_detector("knn", k=1).fit([[1.0, 2.0], [3.0]])
    with pytest.raises(OODInputError, match="reference embeddings holds <U1 values, not numbers"):
        make_detector("knn", k=1).fit([["a", "b"]] * 5)
    from ood_core.features import PyramidExtractor

    with pytest.raises(OODInputError, match=r"device='cuda:9': this machine has .*; pass device='cpu'"):
        PyramidExtractor("tf_efficientnet_lite0", levels=[1], device="cuda:9")
    from ood_core.clip.text_cache import cached_text_embeddings

    not_a_folder = tmp_path / "cache_file"
    not_a_folder.write_text("x")
    with pytest.raises(OODInputError, match="cache_dir=.*cache_file' is a file, not a folder"):
        cached_text_embeddings(object(), ["dog"], ["noun"], {"noun": "a {}"}, cache_dir=str(not_a_folder))
    assert os.path.isfile(not_a_folder)


def test_sweep_k_identical_vectors_and_an_unknown_index_backend_are_named_first(vectors):
    ds = vectors
    ds.set_values("is_ood", [i % 3 == 0 for i in range(len(ds))])
    # k=0 is refused before any row is computed (it used to come back as an error in every row)
    for bad in ((0,), (3, -1), (2.5,), (float("nan"),), ("3",)):
        with pytest.raises(OODInputError, match=r"every k must be an integer >= 1"):
            ood.config_sweep(ds, "vec", reference="trusted", k=bad)
    rows = ood.config_sweep(ds, "vec", reference="trusted", k=(3.0,))
    assert [r["k"] for r in rows] == [3] and rows[0]["error"] is None
    # identical reference vectors: PCA has nothing to keep, said as such (was "all-zero rows ... blank images")
    ds.set_values("same", [np.ones(8, np.float32)] * len(ds))
    with pytest.raises(OODInputError, match=r"15 embeddings to fit the reducer on are all identical.*reduce=None"):
        ood.compute_ood_scores(ds, "same", "s", method="knn", k=2, reference="trusted", reduce="pca",
                               n_components=2)
    assert "s" not in ood.list_ood_runs(ds)
    # an unknown similarity backend is named before the reference is looked at
    with pytest.raises(OODInputError, match=r"backend='pgvectr' is not a similarity backend.*'pgvector'"):
        ood.compute_knn_scores_with_index(ds, "vec", "s", reference="no_such_tag", backend="pgvectr")
    assert "s" not in ds.get_field_schema()


def test_a_sample_passed_as_samples_or_reference_is_named_with_the_view_to_pass(vectors):
    """A Sample has ``_dataset`` too, so it passed the dataset-or-view check and every scorer then stopped with a
    raw ``AttributeError`` (``compute_ood_scores(dataset.first(), ...)``); as a reference it got a message without
    the fix. Both now say how to make a view of given samples."""
    ds = vectors
    sample = ds.first()
    with pytest.raises(OODInputError, match=r"samples=<Sample> is a Sample, not a FiftyOne dataset or view.*"
                                            r"dataset\.select\(sample_ids\)"):
        ood.compute_ood_scores(sample, "vec", "s", method="knn", k=2)
    with pytest.raises(OODInputError, match=r"reference must be a sample tag \(str\) or a view of dataset .*got a "
                                            r"Sample.*reference=dataset\.select\(sample_ids\)"):
        ood.compute_ood_scores(ds, "vec", "s", method="knn", k=2, reference=sample)
    assert "s" not in ood.list_ood_runs(ds) and ds.get_field("s") is None
