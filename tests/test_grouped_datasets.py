"""A grouped dataset shows (and its calls write) the active slice only: an overwrite from one slice keeps the
other slices' values, tags and records consistent, or is refused as from any other view (nothing is wiped)."""

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError


@pytest.fixture
def grouped(fashion_files):
    """10 groups of two slices, ``left`` (active) and ``right``, of real images; every other group trusted."""
    import fiftyone as fo

    paths, names = fashion_files
    ds = fo.Dataset()
    ds.add_group_field("group", default="left")
    samples = []
    for i in range(10):
        group = fo.Group()
        samples += [fo.Sample(filepath=paths[2 * i + j], group=group.element(side),
                              tags=["trusted"] if i % 2 else [],
                              ground_truth=fo.Classification(label=names[2 * i + j]))
                    for j, side in enumerate(("left", "right"))]
    ds.add_samples(samples)
    yield ds
    ds.delete()


def _left(ds, field):
    return ds.select_group_slices("left").values(field)


def test_scores_and_flags_of_one_slice_survive_an_overwrite_from_another(grouped):
    ds = grouped
    rng = np.random.default_rng(0)
    ds.select_group_slices().set_values("emb", list(rng.normal(size=(20, 8)).astype(np.float32)))
    ood.compute_ood_scores(ds, "emb", "o", method="knn", k=2, progress=False)  # the left slice, on itself
    ood.flag_samples(ds, "o", rule="top_n", value=3, tag="ood")
    before = (_left(ds, "o"), _left(ds, "o_flag"), ds.select_group_slices("left").match_tags("ood").count())
    assert before[2] == 3 and None not in before[0]
    ds.group_slice = "right"
    # the left slice's scores came from scoring the left samples together: not kept beside the right's
    with pytest.raises(OODInputError, match="without a trusted reference"):
        ood.compute_ood_scores(ds, "emb", "o", method="knn", k=2, progress=False, overwrite=True)
    with pytest.raises(OODInputError, match="no item of this view has a score in 'o'"):
        ood.flag_samples(ds, "o", rule="top_n", value=3, tag="ood", overwrite=True)
    ds.group_slice = "left"
    assert (_left(ds, "o"), _left(ds, "o_flag"), ds.select_group_slices("left").match_tags("ood").count()) == before


def test_embeddings_of_one_slice_survive_an_overwrite_from_another(grouped):
    ds = grouped
    settings = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)
    ood.compute_pyramid_embeddings(ds, "emb", **settings)  # the left slice
    left = [np.asarray(v) for v in _left(ds, "emb")]
    ds.group_slice = "right"
    ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, **settings)  # the same settings: the right slice
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(left, _left(ds, "emb")))
    assert ds.select_group_slices("right").count("emb") == 10
    with pytest.raises(OODInputError, match="leave the other samples' under the new record"):
        ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, **dict(settings, levels=[2]))
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(left, _left(ds, "emb")))


def test_views_of_other_slices_are_refused_and_tags_are_found_on_any_slice(grouped):
    """A select_group_slices view (other slices than the active one) was scored against the active slice's
    trusted samples and tagged nothing while counting tags: refused. Flags made on one slice are untagged from any
    slice (their tags stayed, counted as removed)."""
    ds = grouped
    rng = np.random.default_rng(1)
    ds.select_group_slices().set_values("emb", list(rng.normal(size=(20, 8)).astype(np.float32)))
    for view in (ds.select_group_slices("right"), ds.select_group_slices()):
        with pytest.raises(OODInputError, match=r"shows other group slices than the active one \('left'.*"
                                                r"dataset.group_slice = '<slice>'"):
            ood.compute_ood_scores(view, "emb", "o", method="knn", k=2, reference="trusted", progress=False)
        with pytest.raises(OODInputError, match="shows other group slices"):
            ood.audit(view, embeddings_field="emb", near_duplicates=False)
    assert ds.list_runs() == [] and not ds.has_field("o")
    ood.compute_ood_scores(ds, "emb", "o", method="knn", k=2, reference="trusted", progress=False)
    tagged = ood.flag_samples(ds, "o", rule="top_n", value=3, tag="look")["num_tagged"]
    assert tagged >= 3 and len(ds.select_group_slices("left").match_tags("look")) == tagged
    ds.group_slice = "right"
    out = ood.delete_flags(ds, "o_flag")
    assert out["tags_removed"] == tagged and len(ds.select_group_slices().match_tags("look")) == 0
    # a refusal from another slice says what works on a grouped dataset
    with pytest.raises(OODInputError, match=r"other reference.*A grouped dataset is scored one slice at a time: "
                                            r"write each slice's scores to a field of its own, or delete the run"):
        ood.compute_ood_scores(ds, "emb", "o", method="knn", k=2, reference="trusted", progress=False,
                               overwrite=True)
