"""Object-patch workflows: boxes that cover no area of their image, and evaluating object scores on the App's
patches view (``to_patches``).

Real Fashion-MNIST images and the bundled backbone on the private MongoDB; each case failed before its fix.
"""

import uuid

import numpy as np
import pytest

from ood_core.errors import OODInputError

EMB = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)

#: boxes that hold no pixel of an object: width 0, height 0, touching the right edge, ending at the left edge
EMPTY_BOXES = ([0.3, 0.3, 0.0, 0.2], [0.3, 0.3, 0.2, 0.0], [1.0, 0.2, 0.1, 0.1], [-0.2, 0.1, 0.2, 0.3])


@pytest.fixture
def boxes_ds(fashion_files):
    """Three images; each has two real objects in 'objs' and the four empty boxes of :data:`EMPTY_BOXES`."""
    import fiftyone as fo

    paths, names = fashion_files
    ds = fo.Dataset(f"test-patches33-{uuid.uuid4().hex[:8]}")
    real = ([0.1, 0.1, 0.7, 0.7], [0.2, 0.0, 0.6, 0.9])
    ds.add_samples([fo.Sample(filepath=paths[i], objs=fo.Detections(detections=[
        fo.Detection(label=names[i], bounding_box=list(b)) for b in real + EMPTY_BOXES])) for i in range(3)],
        progress=False)
    yield ds
    ds.delete()


def _empty_ids(ds):
    return {d.id for s in ds for d in s.objs.detections if d.bounding_box in [list(b) for b in EMPTY_BOXES]}


@pytest.mark.parametrize("projection", [{}, dict(project_dim=2, project_method="pca", pca_fit_size=100)])
def test_objects_whose_box_covers_no_area_are_skipped_with_the_reason_not_embedded_as_a_pixel(boxes_ds,
                                                                                              projection):
    """Before: a box of width or height 0, or one only touching the image's edge, was grown to one pixel and
    embedded (a flat colour, scored like an object: such boxes topped the OOD scores). Now they get no embedding
    and are listed with the reason, in the summary and in the run's results; the real objects are embedded. With
    a PCA projection, the fit sample (which wrote its embeddings first) leaves them out too."""
    import ood_core as ood

    ds = boxes_ds
    empty = _empty_ids(ds)
    summary = ood.compute_pyramid_embeddings(ds, "zemb", patches_field="objs", **EMB, **projection)
    assert summary["num_failed"] == len(empty) == 12 and summary["num_embedded"] == 6
    assert {f["id"] for f in summary["failures"]} == empty
    reasons = {f["error"] for f in summary["failures"]}
    assert any("has no area (its width or height is 0)" in r for r in reasons)
    assert any("covers no area of the image" in r for r in reasons)
    assert all("fix the box" in r and "remove the object" in r for r in reasons)
    ids, vecs = ds.values("objs.detections.id", unwind=True), ds.values("objs.detections.zemb", unwind=True)
    assert len(ids) == len(vecs) == 18
    assert all((v is None) == (i in empty) for i, v in zip(ids, vecs))
    results = ood.load_ood_results(ds, "zemb")
    assert {f["id"] for f in results.failures} == empty
    returned = ood.compute_pyramid_embeddings(ds, None, patches_field="objs", **EMB, **projection)  # not written
    assert returned["num_failed"] == 12 and len(returned["keys"]) == len(returned["embeddings"]) == 6
    assert not set(returned["keys"]) & empty


def test_without_skip_failures_an_object_without_area_is_named_with_its_sample_and_the_fix(boxes_ds):
    """Before: embedded as one pixel without a word. Now ``skip_failures=False`` refuses it before anything is
    embedded, naming the box, the object and its sample, the fix, and how to skip such objects."""
    import ood_core as ood
    from ood_core.images import ImageLoadError

    ds = boxes_ds
    sample = ds.first()
    det = sample.objs.detections[2]  # the first empty box of the first sample
    with pytest.raises(ImageLoadError) as err:
        ood.compute_pyramid_embeddings(ds, "zemb", patches_field="objs", skip_failures=False, **EMB)
    text = str(err.value)
    assert f"object {det.id} of sample {sample.id}" in text
    assert "[0.3, 0.3, 0.0, 0.2]" in text and "has no area" in text
    assert "fix the box" in text and "skip_failures=True" in text
    assert ds.count("objs.detections.zemb") == 0


def test_empty_box_check_leaves_real_boxes_and_malformed_ones_to_the_crop():
    """The check only takes boxes that are well formed and hold no pixel; a tiny real box, a box partly outside
    and a box larger than the image are embedded as before; NaN, negative sizes and boxes wholly outside the image
    keep crop_box's own error."""
    from ood_core.images import empty_box_problem

    for box in ([0.5, 0.5, 1e-4, 1e-4], [0.8, -0.1, 0.5, 0.5], [-0.5, -0.5, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]):
        assert empty_box_problem(box) is None, box
    for box in ([float("nan"), 0, 1, 1], [0.1, 0.1, -0.2, 0.2], None, [0.1, 0.2], [1.2, 0.3, 0.3, 0.3],
                [1.5, 0.2, 0.0, 0.1], [-0.5, -0.5, 0.2, 0.2]):
        assert empty_box_problem(box) is None, box
    for box in EMPTY_BOXES + ([0.2, 1.0, 0.3, 0.3], [0.2, -0.4, 0.3, 0.4]):
        assert empty_box_problem(box) is not None, box


def test_a_batch_of_only_unreadable_items_does_not_stop_a_pca_projected_run(fashion_files, dataset_factory):
    """Before: with a PCA projection, a batch in which no item could be read (an image file missing, with
    batch_size=1; or a batch of boxes without area) stopped the whole call with "embeddings to transform has 0
    rows". Now the item is skipped and listed like in any other run, and the others are embedded."""
    import ood_core as ood

    paths, _ = fashion_files
    ds = dataset_factory(paths[:5] + ["/tmp/patches33-no-such-image.png"])
    summary = ood.compute_pyramid_embeddings(ds, "pca_emb", project_dim=2, project_method="pca", pca_fit_size=3,
                                             batch_size=1, **EMB)
    assert summary["num_embedded"] == 5 and summary["num_failed"] == 1
    assert "does not exist" in summary["failures"][0]["error"]
    assert [v is None for v in ds.values("pca_emb")] == [False] * 5 + [True]


def test_a_single_detection_field_as_patches_field_is_named_with_how_to_wrap_it(boxes_ds):
    """Before: a ``Detection`` field (one box per sample) was refused as having no bounding boxes ("which only a
    Detections field has") and told to pass a Detections field without how. Now the error says why and gives the
    line that makes one; the field it makes is embedded."""
    import fiftyone as fo

    import ood_core as ood

    ds = boxes_ds
    ds.set_values("one", [fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.6, 0.6]) for _ in range(len(ds))])
    with pytest.raises(OODInputError) as err:
        ood.compute_pyramid_embeddings(ds, "one_emb", patches_field="one", **EMB)
    text = str(err.value)
    assert "holds Detection labels, but objects are read from a Detections field" in text
    assert "which only a Detections field has" not in text
    fix = ("dataset.set_values('boxes', [fo.Detections(detections=[d.copy()]) if d else None for d in "
           "dataset.values('one')])")
    assert fix in text
    ds.set_values("boxes", [fo.Detections(detections=[d.copy()]) if d else None for d in ds.values("one")])  # the fix
    assert ood.compute_pyramid_embeddings(ds, "one_emb", patches_field="boxes", **EMB)["num_embedded"] == 3
    assert ds.count("boxes.detections.one_emb") == 3


# --------------------------------------------------------------------------- evaluation on a patches view


@pytest.fixture
def scored_objects(dataset_factory):
    """Ten samples of two objects each; object scores 0..19 recorded as run 'ood' on 'objects', objects with
    score >= 15 have is_ood True and label tag 'ood'; a second Detections field 'other'."""
    import fiftyone as fo

    from ood_core.fo import runs as fo_runs

    ds = dataset_factory([f"/tmp/patches33_{i}.png" for i in range(10)])
    box = [0.1, 0.1, 0.5, 0.5]
    ds.set_values("objects", [fo.Detections(detections=[fo.Detection(label=lab, bounding_box=box)
                                                        for lab in "ab"]) for _ in range(10)])
    ds.set_values("other", [fo.Detections(detections=[fo.Detection(label="c", bounding_box=box)])
                            for _ in range(10)])
    scores = [[float(2 * i), float(2 * i + 1)] for i in range(10)]
    fo_runs.write_and_record(ds, [("objects.detections.ood", scores)], "ood", kind="ood_scores",
                             score_field="ood", patches_field="objects")
    ds.set_values("objects.detections.is_ood", [[s >= 15 for s in row] for row in scores])
    ds.select_labels(ids=ds.filter_labels("objects", _high()).values("objects.detections.id", unwind=True),
                     fields="objects").tag_labels("ood", label_fields="objects")
    return ds


def _high(threshold=15):
    from fiftyone import ViewField as F

    return F("ood") >= threshold


def test_object_scores_are_evaluated_on_the_patches_view_of_their_objects(scored_objects):
    """Before: ``evaluate_ood_run(dataset.to_patches('objects'), 'ood')`` was refused as a generated view. Now it
    evaluates the objects the patches view shows, against their own ground truth (attribute or label tag), with
    the same numbers as the dataset view of those objects."""
    import ood_core as ood

    ds = scored_objects
    patches = ds.to_patches("objects")
    whole = ood.evaluate_ood_run(ds, "ood", gt_field="is_ood")
    on_patches = ood.evaluate_ood_run(patches, "ood", gt_field="is_ood")
    assert on_patches["level"] == "object" and on_patches["num_evaluated"] == 20 and on_patches["num_ood"] == 5
    assert on_patches["auroc"] == whole["auroc"] == 1.0
    assert ood.evaluate_ood_run(patches, "ood", gt_tag="ood")["num_ood"] == 5

    # a filtered patches view: only its objects (scores 10..19: 5 OOD of 10), a score field named directly
    from fiftyone import ViewField as F

    some = patches.match(F("objects.ood") >= 10)
    metrics = ood.evaluate_ood_run(some, "objects.detections.ood", gt_field="is_ood")
    assert metrics["num_evaluated"] == 10 and metrics["num_ood"] == 5 and metrics["num_id"] == 5
    # mixed ground truth in a patches view of a filtered dataset view: the objects of label 'b' only (odd scores)
    b_only = ds.filter_labels("objects", F("label") == "b").to_patches("objects")
    metrics = ood.evaluate_ood_run(b_only, "ood", gt_field="is_ood")
    scores_b = np.arange(1, 20, 2)
    assert metrics["num_evaluated"] == 10 and metrics["num_ood"] == int((scores_b >= 15).sum())


def test_a_patches_view_of_other_objects_or_flagging_on_it_says_what_to_pass(scored_objects):
    """Patches of another field than the run's objects are named with the field to pass. A call that writes on a
    patches view (flag_samples: values go where the run is recorded) names, besides the generic message, the
    patches field and the view of the dataset that shows exactly those objects, which works."""
    import ood_core as ood

    ds = scored_objects
    from fiftyone import ViewField as F

    with pytest.raises(OODInputError, match=r"patches view shows no object of 'objects': nothing to work on"):
        ood.evaluate_ood_run(ds.to_patches("objects").match(F("objects.label") == "z"), "ood", gt_field="is_ood")
    with pytest.raises(OODInputError, match=r"shows the objects of \['other'\].*on the objects of 'objects'.*"
                                            r"to_patches\('objects'\)"):
        ood.evaluate_ood_run(ds.to_patches("other"), "ood", gt_field="is_ood")
    # (flag_samples takes no patches_field: the run names its objects; the message once offered one)
    with pytest.raises(OODInputError, match=rf"patches view of '{ds.name}', where the runs on its objects are "
                                            rf"recorded: pass '{ds.name}' \(or a view of it\), whose run names the "
                                            r"objects.*source_objects_view\(patches_view, 'objects'\)"):
        ood.flag_samples(ds.to_patches("objects"), "ood", rule="top_n", value=2)
    from ood_core.fo.items import source_objects_view

    view = source_objects_view(ds.to_patches("objects").limit(3), "objects")
    assert view.count("objects.detections") == 3
    out = ood.flag_samples(view, "ood", rule="top_n", value=1)
    assert out["flag_field"] == "objects.detections.ood_flag"


def test_a_ground_truth_tag_on_the_patches_as_samples_is_named_with_the_label_tagging_to_do(scored_objects):
    """Tagging patches as samples in a patches view (the App's sample tags there) tags the view's temporary
    dataset, not the objects: evaluating with that tag would count every object as a negative (refused as "no
    positives" without a word on why). Now the error says where the tag is and how to put it on the objects,
    and doing so evaluates."""
    import ood_core as ood
    from fiftyone import ViewField as F

    ds = scored_objects
    patches = ds.to_patches("objects")
    patches.match(F("objects.ood") >= 15).tag_samples("odd")
    with pytest.raises(OODInputError, match=r"gt_tag='odd' is a sample tag of 5 patches of this view.*"
                                            r"patches.match_tags\('odd'\).tag_labels\('odd', "
                                            r"label_fields='objects'\)"):
        ood.evaluate_ood_run(patches, "ood", gt_tag="odd")
    patches.match_tags("odd").tag_labels("odd", label_fields="objects")
    metrics = ood.evaluate_ood_run(patches, "ood", gt_tag="odd")
    assert metrics["num_ood"] == 5 and metrics["auroc"] == 1.0
