"""Object-level inputs a real user has: boxes outside the image, a second label field named beside the objects
scored, the trusted tag put on objects (label tags) instead of samples, label fields without boxes, embeddings
stored on another field's objects, and objects sharing one id.

Real Fashion-MNIST images on the private MongoDB, one small module-scoped dataset with object embeddings; each
case failed before its fix.
"""

import uuid

import pytest

from ood_core.errors import OODInputError

EMB = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)


@pytest.fixture(scope="module")
def objects_ds(fashion_files):
    """20 images of 5 classes, two objects each in 'gt' (the sample's class) and the same boxes in 'pred' (every
    other object relabelled 'Shirt'); a Classification 'cls' and a Polylines 'poly'; samples 1-3 of each 4 tagged
    'trusted'; object embeddings 'pemb' on 'gt'."""
    import fiftyone as fo

    import ood_core as ood

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(5) for j in range(4)]
    boxes = ([0.1, 0.1, 0.7, 0.7], [0.2, 0.0, 0.6, 0.9])
    ds = fo.Dataset(f"test-objects-{uuid.uuid4().hex[:8]}")
    ds.add_samples([fo.Sample(
        filepath=paths[i], tags=["trusted"] if n % 4 else [],
        gt=fo.Detections(detections=[fo.Detection(label=names[i], bounding_box=b) for b in boxes]),
        pred=fo.Detections(detections=[fo.Detection(label="Shirt" if j else names[i], bounding_box=b)
                                       for j, b in enumerate(boxes)]),
        cls=fo.Classification(label="Shirt"),
        poly=fo.Polylines(polylines=[fo.Polyline(label="a", points=[[(0.1, 0.1), (0.5, 0.5), (0.2, 0.6)]])]),
    ) for n, i in enumerate(idx)], progress=False)
    ood.compute_pyramid_embeddings(ds, "pemb", patches_field="gt", **EMB)
    yield ds
    ds.delete()


def test_a_box_outside_its_image_is_skipped_and_named_not_embedded_as_an_edge_pixel(objects_ds):
    """Before: a box wholly outside the image (x > 1, or x + w < 0) was clamped to a 1-pixel strip at the image's
    edge and embedded; such objects shared one embedding and topped the OOD scores for a box error."""
    import fiftyone as fo

    import ood_core as ood
    from ood_core.images import ImageLoadError, crop_box, load_rgb

    ds = objects_ds
    img = load_rgb(ds.first().filepath)
    for box in ([1.2, 0.3, 0.3, 0.3], [-0.5, -0.5, 0.2, 0.2], [0.3, 1.01, 0.2, 0.2], [0.5, 0.5, -0.2, 0.2]):
        with pytest.raises(ImageLoadError, match=r"bounding_box .* (lies outside the image|negative).*fix"):
            crop_box(img, box)
    assert crop_box(img, [0.99, 0.99, 0.0, 0.0]).size == (1, 1)  # a point inside still crops (documented)
    assert crop_box(img, [0.5, 0.5, 1 / 28, 1 / 28]).size == (1, 1)  # a one-pixel box
    assert crop_box(img, [0.8, -0.1, 0.5, 0.5]).size == (6, 11)  # partly outside: the part inside

    sample = ds.first()
    sample["odd"] = fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.5, 0.5]),
                                              fo.Detection(label="a", bounding_box=[1.2, 0.3, 0.3, 0.3])])
    sample.save()
    try:
        summary = ood.compute_pyramid_embeddings(ds.limit(1), "oemb", patches_field="odd", **EMB)
        assert summary["num_embedded"] == 1 and summary["num_failed"] == 1
        assert "lies outside the image" in summary["failures"][0]["error"]
        assert [v is None for v in ds.values("odd.detections.oemb")[0]] == [False, True]
    finally:
        ood.delete_ood_run(ds, "oemb")
        ds.delete_sample_field("odd")


@pytest.mark.parametrize("label_field", ["pred", "cls"])
def test_a_label_field_other_than_the_scored_objects_is_refused_not_ignored(objects_ds, label_field):
    """Before: with patches_field='gt', label_field='pred' (or an image-level Classification) was recorded as the
    run's labels but the objects' own 'gt' labels were read: the scores silently used other labels."""
    import ood_core as ood

    ds = objects_ds
    with pytest.raises(OODInputError, match=rf"label_field='{label_field}'.*patches_field='gt'.*ignored.*"
                                            r"label_field='gt'"):
        ood.compute_ood_scores(ds, "pemb", "s_other", patches_field="gt", label_field=label_field,
                               reference="trusted")
    assert "s_other" not in ood.list_ood_runs(ds) and ds.get_field("gt.detections.s_other") is None


def test_a_trusted_tag_on_objects_is_not_silently_ignored(objects_ds):
    """Before: objects tagged 'trusted' (label tags, as tagging in the App's patches view does) were ignored by
    reference='trusted': with no sample tagged the error said to tag samples, with some the reference was their
    objects only."""
    import ood_core as ood

    ds = objects_ds
    first = ds.limit(2)
    first.tag_labels("trusted", label_fields="gt")
    try:
        with pytest.raises(OODInputError, match=r"4 objects of 'gt' carry 'trusted' as a label tag.*"
                                                r"select_labels\(tags='trusted', fields='gt'\).*untag_labels"):
            ood.compute_ood_scores(ds, "pemb", "s_tag", patches_field="gt", reference="trusted", method="knn", k=3)
        assert "s_tag" not in ood.list_ood_runs(ds)
        # the view the error proposes works, and trusts exactly the tagged objects
        trusted_objects = ds.select_labels(tags="trusted", fields="gt")
        summary = ood.compute_ood_scores(ds, "pemb", "s_tag", patches_field="gt", reference=trusted_objects,
                                         method="knn", k=3)
        assert summary["num_scored"] == 40
        assert ood.get_ood_run_info(ds, "s_tag")["reference"]["num_reference"] == 4
        # the percentile flag rule reads a reference tag the same way
        with pytest.raises(OODInputError, match=r"objects of 'gt' carry 'trusted' as a label tag"):
            ood.flag_samples(ds, "s_tag", rule="percentile", value=0.9, reference="trusted")
        assert ood.flag_samples(ds, "s_tag", rule="percentile", value=0.9)["num_scored"] == 40  # recorded view
    finally:
        ds.untag_labels("trusted", label_fields="gt")
        if "s_tag" in ood.list_ood_runs(ds):
            ood.delete_ood_run(ds, "s_tag")


@pytest.mark.parametrize("field, kind", [("poly", "Polylines"), ("cls", "Classification")])
def test_a_patches_field_without_boxes_names_its_type_and_the_fix(objects_ds, field, kind):
    """Before: a Polylines field was refused as 'expected a Classification field (image labels) or a Detections
    field', offering a Classification that patches_field cannot take, and no way to get boxes."""
    import ood_core as ood

    fix = r"to_detections\(\)" if kind == "Polylines" else r"label_field="
    with pytest.raises(OODInputError, match=rf"patches_field='{field}' holds {kind} labels.*boxes.*'gt'.*{fix}"):
        ood.compute_pyramid_embeddings(objects_ds, "e_bad", patches_field=field, **EMB)
    assert "e_bad" not in ood.list_ood_runs(objects_ds)


def test_embeddings_of_another_field_are_named_with_a_fix_that_works(objects_ds):
    """Before: object embeddings on 'gt' read for the objects of 'pred' said to run
    compute_pyramid_embeddings(samples, 'pemb', patches_field='pred'), which is refused (the key holds 'gt')."""
    import ood_core as ood

    ds = objects_ds
    with pytest.raises(OODInputError, match=r"'pred.detections.pemb' do not exist: embeddings 'pemb' are stored on "
                                            r"the objects of 'gt'.*patches_field='gt'.*'pemb_pred', "
                                            r"patches_field='pred'"):
        ood.compute_label_issues(ds, "pred", "pemb", "li_pred")
    with pytest.raises(OODInputError, match="embeddings run 'pemb' holds 'gt.detections.pemb'"):  # the old advice
        ood.compute_pyramid_embeddings(ds, "pemb", patches_field="pred", **EMB)


def test_objects_sharing_an_id_are_refused_before_values_go_to_the_wrong_object(objects_ds, fashion_files):
    """Before: one fo.Detection added to 20 samples was embedded 20 times, but 19 of its objects were left without
    an embedding; its one score was then written onto all 20 objects (19 of them never scored)."""
    import fiftyone as fo

    import ood_core as ood

    paths, _ = fashion_files
    shared = fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.5, 0.5])
    ds = fo.Dataset(f"test-objects-{uuid.uuid4().hex[:8]}")
    try:
        ds.add_samples([fo.Sample(filepath=p, gt=fo.Detections(detections=[shared])) for p in paths[:3]],
                       progress=False)
        with pytest.raises(OODInputError, match=rf"1 object id\(s\) of 'gt' occur more than once \(object "
                                                rf"{shared.id} 3 times.*detection.copy\(\)"):
            ood.compute_pyramid_embeddings(ds, "e_dup", patches_field="gt", **EMB)
        assert "e_dup" not in ood.list_ood_runs(ds) and ds.get_field("gt.detections.e_dup") is None
    finally:
        ds.delete()
    # scoring: an object copied, id and embedding included, into another sample after embedding
    first, second = list(objects_ds.limit(2))
    second["gt"].detections.append(first["gt"].detections[0])
    second.save()
    try:
        with pytest.raises(OODInputError, match="occur more than once"):
            ood.compute_ood_scores(objects_ds, "pemb", "s_dup", patches_field="gt", reference="trusted")
        assert "s_dup" not in ood.list_ood_runs(objects_ds)
    finally:
        second["gt"].detections.pop()
        second.save()
