"""Object-patch edge cases: boxes thinner than one pixel of their image, and the dataset view of a patches view's
objects (``source_objects_view``) whose query must not grow with the number of objects shown.

Real Fashion-MNIST images (28 x 28 pixels) and the bundled backbone on the private MongoDB; each case failed
before its fix.
"""

import uuid

import pytest
from bson import ObjectId

EMB = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)

#: on a 28 x 28 image: 0.0003 px wide; 0.28 px high; partly outside, 0.28 px of it inside; both under a pixel
SLIVERS = ([0.5, 0.5, 1e-5, 0.2], [0.2, 0.5, 0.3, 0.01], [0.99, 0.2, 0.5, 0.3], [0.1, 0.1, 0.02, 0.02])
#: real objects, kept: an ordinary box, one pixel exactly, partly outside with 6 x 11 pixels inside, the image
REAL = ([0.1, 0.1, 0.7, 0.7], [0.5, 0.5, 1 / 28, 1 / 28], [0.8, -0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0])


@pytest.fixture
def sliver_ds(fashion_files):
    """Three images, each with the boxes of :data:`REAL` then :data:`SLIVERS` in 'objs'."""
    import fiftyone as fo

    paths, names = fashion_files
    ds = fo.Dataset(f"test-object-edges-{uuid.uuid4().hex[:8]}")
    ds.add_samples([fo.Sample(filepath=paths[i], objs=fo.Detections(detections=[
        fo.Detection(label=names[i], bounding_box=list(b)) for b in REAL + SLIVERS])) for i in range(3)],
        progress=False)
    yield ds
    ds.delete()


def test_a_box_thinner_than_one_pixel_is_skipped_with_the_reason_not_embedded_as_a_strip(sliver_ds):
    """Before: a box with an area but under one pixel of its image wide or high (0.0003 px, or a box reaching
    past the edge with 0.28 px inside) was cropped to a one-pixel strip of flat colour and embedded, scored like
    an object. Now it is skipped and listed with the reason, like a box without area; real boxes (one pixel
    exactly, partly outside with pixels inside) are embedded as before."""
    import ood_core as ood
    from ood_core.images import crop_box, load_rgb

    ds = sliver_ds
    slivers = {d.id for s in ds for d in s.objs.detections if d.bounding_box in [list(b) for b in SLIVERS]}
    summary = ood.compute_pyramid_embeddings(ds, "semb", patches_field="objs", **EMB)
    assert summary["num_failed"] == len(slivers) == 12 and summary["num_embedded"] == 12
    assert {f["id"] for f in summary["failures"]} == slivers
    for failure in summary["failures"]:
        assert "covers less than one pixel of its 28x28 image" in failure["error"]
        assert "fix the box" in failure["error"] and "remove the object" in failure["error"]
    assert {f["id"] for f in ood.load_ood_results(ds, "semb").failures} == slivers
    ids, vecs = ds.values("objs.detections.id", unwind=True), ds.values("objs.detections.semb", unwind=True)
    assert all((v is None) == (i in slivers) for i, v in zip(ids, vecs))

    # the real objects' embeddings are those of their crops, as before
    from ood_core.features import PyramidExtractor

    extractor = PyramidExtractor(EMB["model_name"], levels=EMB["levels"], grid=EMB["grid"])
    first = ds.first()
    img = load_rgb(first.filepath)
    expected = extractor.embed_images([crop_box(img, b) for b in REAL])
    got = [d.semb for d in first.objs.detections[:len(REAL)]]
    assert all(abs(g - e).max() < 1e-5 for g, e in zip(got, expected))


def test_without_skip_failures_a_sliver_box_is_named_with_its_object_and_sample(sliver_ds):
    """Before: embedded without a word. Now ``skip_failures=False`` stops at it, naming the box, its size in
    pixels, the object and its sample, and the fix."""
    import fiftyone as fo

    import ood_core as ood
    from ood_core.images import ImageLoadError

    ds = sliver_ds
    sample = ds.first()
    sample["one_sliver"] = fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.5, 0.5, 1e-5, 0.2])])
    sample.save()
    det = sample.one_sliver.detections[0]
    with pytest.raises(ImageLoadError) as err:
        ood.compute_pyramid_embeddings(ds, "s1", patches_field="one_sliver", skip_failures=False, **EMB)
    text = str(err.value)
    assert f"object {det.id} of sample {sample.id}" in text and "[0.5, 0.5, 1e-05, 0.2]" in text
    assert "less than one pixel" in text and "0.00028 x 5.6 pixels" in text and "skip_failures=True" in text


def test_sliver_check_takes_only_well_formed_boxes_under_a_pixel_inside_the_image():
    """The check counts the part of the box inside the image, at the image's own size; boxes of one pixel or more
    pass, and malformed or wholly outside boxes keep crop_box's own error."""
    from ood_core.images import subpixel_box_problem

    for box in SLIVERS:
        assert subpixel_box_problem(box, (28, 28)) is not None, box
    for box in REAL:
        assert subpixel_box_problem(box, (28, 28)) is None, box
    assert subpixel_box_problem([0.1, 0.1, 0.02, 0.02], (100, 100)) is None  # 2 x 2 pixels of a larger image
    assert subpixel_box_problem([0.1, 0.1, 0.02, 0.5], (100, 10)) is None  # 2 x 5 pixels
    assert subpixel_box_problem([0.1, 0.1, 0.5, 0.02], (100, 10)) is not None  # 0.2 px high
    for box in ([float("nan"), 0, 1, 1], [0.1, 0.1, -0.2, 0.2], None, [0.1, 0.2], [1.2, 0.3, 0.3, 0.3]):
        assert subpixel_box_problem(box, (28, 28)) is None, box


# --------------------------------------------------------------------------- the source view of a patches view


def _listed_ids(pipeline):
    """How many ObjectIds a view's aggregation pipeline lists (the size of its query grows with them)."""
    if isinstance(pipeline, ObjectId):
        return 1
    if isinstance(pipeline, dict):
        return sum(_listed_ids(v) for v in pipeline.values())
    if isinstance(pipeline, (list, tuple)):
        return sum(_listed_ids(v) for v in pipeline)
    return 0


@pytest.fixture
def many_objects(dataset_factory):
    """40 samples with 5 objects each (labels a, b, c, d, e) in 'objs' and one polyline in 'poly'; four samples
    without objects (None, an empty list)."""
    import fiftyone as fo

    ds = dataset_factory([f"/tmp/object_edges_{i}.png" for i in range(44)])
    box = [0.1, 0.1, 0.5, 0.5]
    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label=lab, bounding_box=box) for lab in "abcde"])
                           for _ in range(40)] + [None, fo.Detections(), None, fo.Detections()])
    ds.set_values("poly", [fo.Polylines(polylines=[fo.Polyline(label="x", points=[[(0.1, 0.1), (0.5, 0.5)]])])
                           for _ in range(40)] + [None, fo.Polylines(), None, fo.Polylines()])
    return ds


def test_the_source_view_of_a_patches_view_does_not_list_every_object_it_shows(many_objects):
    """Before: ``source_objects_view`` listed every object id shown in one ``$in``: with hundreds of thousands of
    objects the query neared MongoDB's 16 MB limit, and a ``$in`` scans the list for each object (44 s at
    100,000 objects). Now a patches view of every object lists none, a view of most objects lists the hidden
    ones, a view of few the shown ones; each view shows exactly the patches' objects."""
    from fiftyone import ViewField as F

    from ood_core.fo.items import source_objects_view

    ds = many_objects
    cases = [("objs", ds.to_patches("objs")), ("objs", ds.to_patches("objs").match(F("objs.label") != "a")),
             ("objs", ds.to_patches("objs").match(F("objs.label") == "a")), ("poly", ds.to_patches("poly"))]
    listed = []
    for field, patches in cases:
        shown = set(patches.values(f"{field}.id"))
        view = source_objects_view(patches, field)
        got = view.values(f"{field}.{'detections' if field == 'objs' else 'polylines'}.id", unwind=True)
        assert sorted(got) == sorted(shown)
        assert len(view) == len(set(patches.values("sample_id")))  # samples without a shown object left out
        listed.append(_listed_ids(view._pipeline()))
    # every object (200; 40 polylines): none listed; 160 of 200: the 40 hidden; 40 of 200: the 40 shown
    assert listed == [0, 40, 40, 0]


    # evaluate_ood_run on a patches view reads the source view: it counts exactly the objects shown
    import ood_core as ood
    from ood_core.fo import runs as fo_runs

    scores = [[float(5 * i + j) for j in range(5)] for i in range(40)] + [None, [], None, []]
    fo_runs.write_and_record(ds, [("objs.detections.ood", scores)], "ood", kind="ood_scores", score_field="ood",
                             patches_field="objs")
    ds.set_values("objs.detections.is_ood", [[s >= 150 for s in row] if row else row for row in scores])
    metrics = ood.evaluate_ood_run(cases[1][1], "ood", gt_field="is_ood")
    assert metrics["num_evaluated"] == 160 and metrics["num_ood"] == 40
    assert ood.evaluate_ood_run(cases[0][1], "ood", gt_field="is_ood")["num_evaluated"] == 200


@pytest.mark.parametrize("path", ["objs.detections", "objs.detections.label"])
def test_the_objects_list_as_patches_field_is_answered_with_the_field_itself(many_objects, path):
    """Before: ``patches_field='objs.detections'`` (the list of objects, as FiftyOne paths to object attributes
    read) was refused as "a ListField" with only "pass a Detections field". Now the error names the field to
    pass, and passing it works."""
    import ood_core as ood
    from ood_core.errors import OODInputError
    from ood_core.fo.items import check_patches_field

    ds = many_objects
    with pytest.raises(OODInputError, match=rf"patches_field='{path}' holds .*pass the Detections field itself, "
                                            r"patches_field='objs'"):
        ood.compute_pyramid_embeddings(ds, "l_emb", patches_field=path, **EMB)
    assert "l_emb" not in ood.list_ood_runs(ds)
    check_patches_field(ds, "objs")  # the field named is accepted


def test_the_source_view_of_a_view_that_is_no_patches_view_says_what_it_takes(many_objects):
    """Before: ``source_objects_view(dataset, 'objs')`` raised a bare TypeError ("argument of type 'NoneType' is
    not iterable"). Now the error says it takes a patches view, and which one."""
    from ood_core.errors import OODInputError
    from ood_core.fo.items import source_objects_view

    ds = many_objects
    for collection in (ds, ds.limit(3)):
        with pytest.raises(OODInputError, match=r"takes a patches view.*dataset.to_patches\('objs'\)"):
            source_objects_view(collection, "objs")
    assert len(source_objects_view(ds.to_patches("objs"), "objs")) == 40
