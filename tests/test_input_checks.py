"""Four inputs that used to get a raw library error, a silent result or a misleading message: a map of embeddings
that are not all vectors of one length of finite numbers, an object without a usable bounding box, one path
given where a list of paths is expected, and the advice to skip an image recorded for an image that was skipped."""

import pathlib
import pickle

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.images import ImageLoadError, crop_box, load_rgb


@pytest.fixture
def vectors(dataset_factory):
    """10 samples whose fields hold random 8-d vectors, except one odd item per field."""
    import fiftyone as fo

    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/input_checks_{i}.png" for i in range(10)])
    good = [rng.normal(size=8) for _ in range(10)]
    ds.set_values("vec", [list(v) for v in good])
    ds.set_values("mixed", [list(rng.normal(size=8 if i else 5)) for i in range(10)])
    ds.set_values("nan", [list(v) if i != 3 else [float("nan")] * 8 for i, v in enumerate(good)])
    ds.set_values("text", [[str(x) for x in v] for v in good])
    ds.add_sample_field("late_text", fo.ListField)  # any list: numbers first, strings later
    ds.set_values("late_text", [list(v) if i < 9 else ["a"] * 8 for i, v in enumerate(good)])
    return ds


def test_a_map_refuses_mixed_lengths_nan_strings_and_a_non_bool_overwrite(vectors):
    ds = vectors
    for field, named in (("mixed", r"embeddings in 'mixed' have mixed shapes \[\(5,\), \(8,\)\]; recompute them"),
                         ("nan", r"1 item\(s\) have NaN or infinite values in 'nan'.*recompute their embeddings"),
                         ("text", "field 'text' does not hold embedding vectors: item .* has a list"),
                         ("late_text", "field 'late_text' does not hold embedding vectors")):
        with pytest.raises(OODInputError, match=named):
            ood.compute_ood_visualization(ds, field, "m1", method="pca")
    with pytest.raises(OODInputError, match=r"overwrite='no' is not valid; pass True .* or False"):
        ood.compute_ood_visualization(ds, "vec", "m1", method="pca", overwrite="no")
    assert ds.list_brain_runs() == []
    assert ood.compute_ood_visualization(ds, "vec", "m1", method="pca")["num_points"] == 10


def test_a_map_of_object_embeddings_refuses_a_nan_vector(vectors):
    import fiftyone as fo

    ds = vectors
    rng = np.random.default_rng(1)
    ds.set_values("objects", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0, 0, 1, 1])])
                              for _ in range(10)])
    ds.set_values("objects.detections.emb", [[list(rng.normal(size=4)) if i else [float("nan")] * 4]
                                             for i in range(10)])
    ds.add_dynamic_sample_fields()  # declares objects.detections.emb, as compute_pyramid_embeddings does
    with pytest.raises(OODInputError, match=r"NaN or infinite values in 'emb'"):
        ood.compute_ood_visualization(ds, "emb", "m1", method="pca", patches_field="objects")
    assert ds.list_brain_runs() == []


@pytest.fixture
def boxes(dataset_factory, fashion_files):
    """One real image with a good object and three without a usable box (none, NaN, three numbers)."""
    import fiftyone as fo

    paths, _ = fashion_files
    ds = dataset_factory(paths[:1])
    dets = [fo.Detection(label="ok", bounding_box=[0.1, 0.1, 0.5, 0.5]), fo.Detection(label="none"),
            fo.Detection(label="nan", bounding_box=[float("nan"), 0.1, 0.5, 0.5]),
            fo.Detection(label="three", bounding_box=[0.1, 0.1, 0.5])]
    ds.set_values("objects", [fo.Detections(detections=dets)])
    return ds


def test_an_object_without_a_usable_box_is_named_not_called_an_unreadable_image(boxes, session_extractor):
    ds = boxes
    with pytest.raises(ImageLoadError, match=r"bounding_box \[\] of an object .* is missing or malformed.*give the "
                                             r"object a \[x, y, w, h\] box in 0\.\.1, or remove it.*"
                                             r"pass skip_failures=True") as raised:
        ood.compute_pyramid_embeddings(ds, "emb", patches_field="objects", skip_failures=False, progress=False)
    assert "unpack" not in str(raised.value) and str(raised.value).count("skip_failures=True") == 1
    out = ood.compute_pyramid_embeddings(ds, "emb", patches_field="objects", skip_failures=True, progress=False)
    assert out["num_embedded"] == 1 and out["num_failed"] == 3
    errors = [f["error"] for f in out["failures"]]
    assert all("missing or malformed" in e and "or remove it" in e and "skip_failures" not in e for e in errors)
    assert "[nan, 0.1, 0.5, 0.5]" in errors[1] and "[0.1, 0.1, 0.5]" in errors[2]
    with pytest.raises(ImageLoadError, match=r"bounding_box None .* is missing or malformed"):
        crop_box(load_rgb(ds.first().filepath), None)


def test_one_path_instead_of_a_list_is_refused(extractor, fashion_files):
    path = fashion_files[0][0]
    for items in (path, pathlib.Path(path)):
        with pytest.raises(OODInputError, match=r"items=.* is one path, not a list of them; pass a list, e\.g\. "
                                                r"\[path\]"):
            extractor.extract(items, progress=False)
        with pytest.raises(OODInputError, match="is one path, not a list of them"):
            next(extractor.iter_extract(items, progress=False))
    assert extractor.extract([path], progress=False).embeddings.shape == (1, extractor.dim)


def test_a_skipped_image_is_recorded_without_the_advice_to_skip_it(tmp_path, fashion_files, extractor,
                                                                     dataset_factory, session_extractor):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageLoadError) as raised:
        load_rgb(broken)
    e = raised.value
    assert str(e).endswith("; re-export the file or pass skip_failures=True to skip it")
    assert e.fix == "re-export the file" and "could not be decoded" in e.problem
    assert e.skipped_message == f"{e.problem}; re-export the file"
    assert pickle.loads(pickle.dumps(e)).skipped_message == e.skipped_message  # DataLoader workers pickle
    items = [fashion_files[0][0], str(broken)]
    res = extractor.extract(items, skip_failures=True, progress=False)
    assert res.failures == [(1, e.skipped_message)]
    with pytest.raises(ImageLoadError, match="re-export the file") as raised:
        extractor.extract(items, progress=False)
    assert str(raised.value).count("skip_failures=True") == 1
    ds = dataset_factory(items)
    ood.compute_pyramid_embeddings(ds, "emb", progress=False)
    recorded = ood.load_ood_results(ds, "emb").failures
    assert [f["error"] for f in recorded] == [e.skipped_message]
