"""Embeddings runs record how their files were read (``ood_core.images.decoding_record``), so a resume or a fill-in
by a release that reads files another way (colour profiles, reduced JPEG decoding) is refused, in the SDK and on
the App's form, instead of storing two readings under one record; ``overwrite=True`` recomputes everything. CLIP
embeddings record it too: an overwrite on a view of a CLIP field read another way is refused.

Real FiftyOne datasets on the tests' MongoDB, real Fashion-MNIST PNGs and the real timm backbone. A run of an
earlier release is made by removing the entry from a real run's record: those releases wrote none.
"""

import numpy as np
import pytest

import fiftyone as fo

import form_helpers as forms
import ood_core as ood
import ood_core.images as images
from ood_core.errors import OODInputError

FAST = dict(batch_size=8, chunk_size=8, progress=False, num_workers=0)
#: the session extractor's settings (tests/conftest.py)
SETTINGS = dict(model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool", grid=1)


def _as_an_earlier_release(ds, key):
    """Remove the run's ``decoding`` entry, as the records of releases before reader version 2 are."""
    config = ds.get_run_info(key).config
    del config.decoding
    ds.update_run_config(key, config)
    assert "decoding" not in ood.get_ood_run_info(ds, key)


@pytest.fixture
def embedded_then_grown(dataset_factory, fashion_files, session_extractor):
    """8 images with complete embeddings ``emb`` (vectors by sample id), then a 9th sample without one."""
    paths, names = fashion_files
    ds = dataset_factory(paths[:8], names[:8])
    ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    before = dict(zip(ds.values("id"), ds.values("emb")))
    ds.add_sample(fo.Sample(filepath=paths[8], ground_truth=fo.Classification(label=names[8])))
    return ds, before


def _record(ds):
    """The run's record as the database holds it (a fresh object's timestamp has finer digits)."""
    ds.reload()
    return ood.get_ood_run_info(ds, "emb")


def _unchanged(ds, before, record):
    """``emb`` holds exactly ``before`` (the added sample still nothing) and the run's record is ``record``."""
    ds.reload()
    got = dict(zip(ds.values("id"), ds.values("emb")))
    assert {k: v for k, v in got.items() if v is not None}.keys() == before.keys()
    for key, vec in before.items():
        np.testing.assert_array_equal(got[key], vec)
    assert _record(ds) == record


def test_the_record_says_how_whole_images_and_object_boxes_are_read(dataset_factory, fashion_files,
                                                                     session_extractor):
    paths, names = fashion_files
    ds = dataset_factory(paths[:6], names[:6])
    ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    # whole images: decoded down to twice the transform's 256 px resize (EfficientNet-Lite0: 224 / 0.875)
    assert ood.get_ood_run_info(ds, "emb")["decoding"] == {"reader": images.READER_VERSION, "jpeg_min_side": 512}
    ds.set_values("objects", [fo.Detections(detections=[fo.Detection(label=n, bounding_box=[0.1, 0.1, 0.8, 0.8])])
                              for n in names[:6]])
    ood.compute_pyramid_embeddings(ds, "obj_emb", patches_field="objects", **SETTINGS, **FAST)
    # boxes are cut from the full decode
    assert ood.get_ood_run_info(ds, "obj_emb")["decoding"] == {"reader": images.READER_VERSION,
                                                               "jpeg_min_side": None}


def test_an_earlier_release_run_is_not_filled_in_with_files_read_another_way(embedded_then_grown):
    ds, before = embedded_then_grown
    _as_an_earlier_release(ds, "emb")
    record = _record(ds)
    with pytest.raises(OODInputError) as refused:
        ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    message = str(refused.value)
    assert "image reading: stored an earlier release's (no record: colour profiles ignored, JPEGs decoded at full " \
        f"size) vs requested reader version {images.READER_VERSION}" in message
    assert "Pass overwrite=True to recompute all of them" in message
    _unchanged(ds, before, record)
    # the form says the same before the run starts
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="emb"))
    assert props["embeddings_field"].invalid and "embeddings_field_resume" not in props
    assert "image reading: stored an earlier release's" in props["embeddings_field"].error_message
    # overwrite recomputes every embedding and records the reading
    out = ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, **SETTINGS, **FAST)
    assert out["status"] == "complete" and out["num_computed"] == 9
    assert ood.get_ood_run_info(ds, "emb")["decoding"]["reader"] == images.READER_VERSION


def test_a_later_reader_does_not_resume_a_run_read_by_this_one(embedded_then_grown, monkeypatch):
    ds, before = embedded_then_grown
    record = _record(ds)
    monkeypatch.setattr(images, "READER_VERSION", images.READER_VERSION + 1)  # a release that reads files anew
    later = images.READER_VERSION
    with pytest.raises(OODInputError, match=f"image reading: stored reader version {later - 1} vs requested "
                                            f"reader version {later}"):
        ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    _unchanged(ds, before, record)
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="emb"))
    assert f"stored reader version {later - 1} vs requested reader version {later}" in \
        props["embeddings_field"].error_message
    monkeypatch.setattr(images, "READER_VERSION", later - 1)  # the same reader: the fill-in goes ahead
    assert not forms.invalid(forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="emb")))
    out = ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    assert out["num_computed"] == 1 and out["status"] == "complete"


def test_a_clip_field_an_earlier_release_made_is_not_overwritten_on_a_view(dataset_factory, fashion_files,
                                                                            tiny_clip):
    """Overwriting CLIP embeddings on a view keeps the other samples' vectors: only when they were read the same
    way (the record of a release before the reader's version has none)."""
    paths, names = fashion_files
    ds = dataset_factory(paths[:10], names[:10])
    model = dict(model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors), progress=False)
    ood.compute_clip_embeddings(ds, "clip", **model)
    # twice the tiny model's 32 px resize (tests/test_jpeg_decode.py checks the reduced decode)
    assert ood.get_ood_run_info(ds, "clip")["decoding"] == {"reader": images.READER_VERSION, "jpeg_min_side": 64}
    ood.compute_clip_embeddings(ds.limit(5), "clip", overwrite=True, **model)  # the same reading: allowed
    _as_an_earlier_release(ds, "clip")
    before = [list(v) for v in ds.values("clip")]
    with pytest.raises(OODInputError, match="were made from files read another way \\(image reading: stored an "
                                            "earlier release's .* Overwrite on the whole dataset"):
        ood.compute_clip_embeddings(ds.limit(5), "clip", overwrite=True, **model)
    ds.reload()
    assert [list(v) for v in ds.values("clip")] == before and "decoding" not in ood.get_ood_run_info(ds, "clip")
    out = ood.compute_clip_embeddings(ds, "clip", overwrite=True, **model)  # the whole dataset: recorded anew
    assert out["num_embedded"] == 10
    assert ood.get_ood_run_info(ds, "clip")["decoding"]["reader"] == images.READER_VERSION


def test_an_audit_names_its_own_fix_for_embeddings_an_earlier_release_left_unfinished(dataset_factory, fashion_files,
                                                                                     session_extractor, tmp_path):
    """The audit computes its embeddings into 'ood_embeddings': an interrupted run there of an earlier release is
    not added to, and the error names the calls that fix it (the embeddings call's own advice, overwrite=True,
    would have sent the user to audit(overwrite=True), which is refused the same way)."""
    paths, _ = fashion_files
    ds = dataset_factory(paths[::10])  # 20 images
    ood.compute_pyramid_embeddings(ds, "ood_embeddings", shard=(0, 2), **FAST)  # interrupted: half of them
    _as_an_earlier_release(ds, "ood_embeddings")
    ds.reload()
    record = ood.get_ood_run_info(ds, "ood_embeddings")
    for overwrite in (False, True):
        with pytest.raises(OODInputError) as refused:
            ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False, overwrite=overwrite)
        message = str(refused.value)
        assert message.startswith("the audit computes its embeddings into 'ood_embeddings', but embeddings "
                                  "'ood_embeddings' on dataset") and "image reading: stored an earlier release's" \
            in message
        assert "ood.compute_pyramid_embeddings(dataset, 'ood_embeddings', overwrite=True)" in message
        assert "Pass overwrite=True" not in message
        ds.reload()
        assert ood.list_ood_runs(ds) == ["ood_embeddings"] and ood.get_ood_run_info(ds, "ood_embeddings") == record
    ood.compute_pyramid_embeddings(ds, "ood_embeddings", overwrite=True, **FAST)  # the fix the error names
    out = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)
    assert not out["embeddings_computed"] and out["embeddings_field"] == "ood_embeddings"
