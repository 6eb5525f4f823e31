"""Embeddings on real FiftyOne datasets: pyramid embeddings and their record, object patches, unreadable and
interrupted extraction, projection and float16 storage, the default pyramid, video refused."""

import subprocess
import sys

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import run_admin
from ood_core.fo import runs as fo_runs


def test_embeddings_written_with_config_and_reload_in_fresh_process(dataset_factory, fashion_files, extractor):
    paths, names = fashion_files
    ds = dataset_factory(paths[:30], names[:30])
    summary = ood.compute_pyramid_embeddings(
        ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1, progress=False
    )
    assert summary["num_embedded"] == 30 and summary["dim"] == extractor.dim
    vecs = ds.values("emb")
    assert len(vecs) == 30 and all(v.shape == (extractor.dim,) for v in vecs)
    direct = extractor.extract(ds.values("filepath")[:3], progress=False).embeddings
    np.testing.assert_allclose(np.stack(vecs[:3]), direct, rtol=1e-4, atol=1e-5)
    info = fo_runs.get_ood_run_info(ds, "emb")
    assert info["kind"] == "embeddings"
    assert info["backbone"]["model_name"] == "tf_efficientnet_lite0"
    assert info["backbone"]["levels"] == extractor.level_names
    assert info["backbone"]["weights"]["kind"] == "bundled"
    code = (
        "import fiftyone as fo, sys; sys.path.insert(0, '.');"
        "from ood_core.fo import runs as fo_runs;"
        f"ds = fo.load_dataset('{ds.name}');"
        "print(fo_runs.list_ood_runs(ds), fo_runs.get_ood_run_info(ds, 'emb')['backbone']['dim'])"
    )
    ds.persistent = True
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"['emb'] {extractor.dim}" in out.stdout


def test_video_samples_are_refused_before_decoding_with_the_frames_fix(dataset_factory, tmp_path):
    import fiftyone as fo

    from ood_core.fo.clip_common import encode_samples

    ds = dataset_factory([])
    ds.add_samples([fo.Sample(filepath=str(tmp_path / f"clip{i}.mp4")) for i in range(2)])
    assert ds.media_type == "video"
    for call in (lambda: ood.compute_pyramid_embeddings(ds, "emb"),
                 lambda: encode_samples(ds, None, batch_size=8, skip_failures=True, progress=False)):
        with pytest.raises(OODInputError, match="decodes images, but .* holds video samples here.*to_frames"):
            call()
    assert not ds.has_field("emb") and not ood.list_ood_runs(ds)


def test_object_patches_embed_and_score_each_object(dataset_factory, fashion_files, extractor, session_extractor):
    import fiftyone as fo

    paths, names = fashion_files
    ds = dataset_factory(paths[:40])
    dets = []
    for i, n in enumerate(names[:40]):
        dets.append(fo.Detections(detections=[
            fo.Detection(label=n, bounding_box=[0.0, 0.0, 1.0, 1.0]),
            fo.Detection(label=n, bounding_box=[0.1, 0.1, 0.6, 0.6]),
        ]))
    ds.set_values("objects", dets)
    summary = ood.compute_pyramid_embeddings(ds, "emb", patches_field="objects", progress=False)
    assert summary["num_embedded"] == 80
    emb = ds.values("objects.detections.emb")
    assert all(len(row) == 2 and row[0].shape == (extractor.dim,) for row in emb)
    whole = extractor.extract(ds.values("filepath")[:1], progress=False).embeddings[0]
    np.testing.assert_allclose(emb[0][0], whole, rtol=1e-4, atol=1e-5)  # full-image box == whole image
    ood.compute_label_issues(ds, "objects", "emb", "issue", k=3)
    scores = ds.values("objects.detections.issue")
    assert all(len(row) == 2 and all(0.0 <= s <= 1.0 for s in row) for row in scores)
    assert fo_runs.get_ood_run_info(ds, "issue")["fields"] == ["objects.detections.issue",
                                                                "objects.detections.issue_suggestion"]
    suggested = ds.values("objects.detections.issue_suggestion")  # another class, or None: the label agrees
    given = ds.values("objects.detections.label")
    assert all(len(row) == 2 and all(lab is None or (lab in set(names) and lab != g) for lab, g in zip(row, grow))
               for row, grow in zip(suggested, given))
    # object embeddings named without patches_field: the error says where they are and what to pass
    for call in (lambda: ood.compute_ood_scores(ds, "emb", "s"),
                 lambda: ood.compute_ood_visualization(ds, "emb", "viz", method="pca")):
        with pytest.raises(OODInputError,
                           match=r"object embeddings.*'objects.detections.emb'.*patches_field='objects'"):
            call()
    run_admin.delete_ood_run(ds, "issue")
    assert ds.get_field("objects.detections.issue") is None


def test_skip_failures_records_failed_samples(dataset_factory, fashion_files, extractor, session_extractor, tmp_path):
    paths, names = fashion_files
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    ds = dataset_factory([paths[0], str(bad), paths[1]])
    from ood_core.images import ImageLoadError

    with pytest.raises(ImageLoadError, match="bad.png"):
        ood.compute_pyramid_embeddings(ds, "emb", skip_failures=False, progress=False)
    # nothing under the real name; the finished part is kept, marked partial, for resuming
    assert not ds.has_field("emb")
    assert fo_runs.get_ood_run_info(ds, "emb")["status"] == "partial"
    summary = ood.compute_pyramid_embeddings(ds, "emb", progress=False)  # the default skips (as FiftyOne's)
    assert summary["num_embedded"] == 2 and summary["num_failed"] == 1
    vals = ds.values("emb")
    assert vals[1] is None and vals[0] is not None
    failures = fo_runs.load_ood_results(ds, "emb").failures
    assert len(failures) == 1 and "bad.png" in failures[0]["error"]


def test_interrupted_extraction_resumes_and_refuses_to_mix(dataset_factory, fashion_files, extractor, session_extractor,
                                                            monkeypatch):

    paths, names = fashion_files
    ds = dataset_factory(paths[:40], names[:40])
    real_iter = type(extractor).iter_extract
    calls = {"batches": 0, "items": 0}

    def interrupted(self, items, **kw):
        calls["items"] += len(items)
        for n, out in enumerate(real_iter(self, items, **kw)):
            if n == 2 and calls["batches"] == 0:
                calls["batches"] = 1
                raise KeyboardInterrupt  # the user pressed Ctrl-C after 2 batches
            yield out

    monkeypatch.setattr(type(extractor), "iter_extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ood.compute_pyramid_embeddings(ds, "emb", batch_size=8, chunk_size=8, progress=False)
    assert not ds.has_field("emb")  # nothing under the real name
    info = fo_runs.get_ood_run_info(ds, "emb")
    assert info["status"] == "partial" and info["fields"] == ["tmp_ood_partial_emb"]
    assert len(ds.exists("tmp_ood_partial_emb")) == 16  # two batches kept

    calls["items"] = 0
    summary = ood.compute_pyramid_embeddings(ds, "emb", batch_size=8, chunk_size=8, progress=False)
    assert calls["items"] == 24 and summary["num_computed"] == 24 and summary["resumed"]
    assert summary["num_embedded"] == 40 and not ds.has_field("tmp_ood_partial_emb")
    assert fo_runs.get_ood_run_info(ds, "emb")["status"] == "complete"
    full = extractor.extract(ds.values("filepath"), progress=False).embeddings
    np.testing.assert_allclose(np.stack(ds.values("emb")), full, rtol=1e-4, atol=1e-5)

    # new samples: only they are computed
    import fiftyone as fo

    ds.add_samples([fo.Sample(filepath=p) for p in paths[40:45]], progress=False)
    calls["items"] = 0
    summary = ood.compute_pyramid_embeddings(ds, "emb", progress=False)
    assert calls["items"] == 5 and summary["num_embedded"] == 45

    # another setting must not be mixed in
    with pytest.raises(OODInputError, match="dtype: stored 'float32' vs requested 'float16'"):
        ood.compute_pyramid_embeddings(ds, "emb", dtype="float16", progress=False)


def test_projection_and_float16_storage(dataset_factory, fashion_files, extractor, session_extractor):
    paths, names = fashion_files
    ds = dataset_factory(paths[:20], names[:20])
    summary = ood.compute_pyramid_embeddings(ds, "emb", project_dim=32, project_seed=3, dtype="float16",
                                                progress=False)
    assert summary["dim"] == 32
    vecs = ds.values("emb")
    assert all(v.dtype == np.float16 and v.shape == (32,) for v in vecs)
    from ood_core.features import random_projection_matrix

    full = extractor.extract(ds.values("filepath"), progress=False).embeddings
    expected = (full @ random_projection_matrix(extractor.dim, 32, 3)).astype(np.float16)
    np.testing.assert_allclose(np.stack(vecs).astype(np.float32), expected.astype(np.float32), rtol=2e-2, atol=2e-2)
    # scoring reads float16 embeddings like any other
    ood.compute_ood_scores(ds, "emb", "s", k=3)
    assert all(isinstance(v, float) for v in ds.values("s"))


def test_default_pyramid_is_every_level_pooled_2x2(dataset_factory, fashion_files):
    paths, names = fashion_files
    ds = dataset_factory(paths[:4], names[:4])
    summary = ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", progress=False)
    backbone = summary["config"]["backbone"]
    assert backbone["levels"] == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]
    assert backbone["mode"] == "pool" and backbone["grid"] == 2
    assert summary["dim"] == (16 + 24 + 40 + 112 + 320) * 4
    # the default scorer finds the level widths in the run record and scores deepest level + all levels
    ds.tag_samples("trusted")
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=1)
    info = fo_runs.get_ood_run_info(ds, "s")
    assert info["detector"]["method"] == "pyramid_knn"
    assert info["detector"]["level_dims"] == [64, 96, 160, 448, 1280]


def test_default_pyramid_of_a_wide_backbone_keeps_the_deepest_level(dataset_factory, fashion_files):
    from ood_core.fo.embeddings import DEFAULT_MAX_DIM

    paths, names = fashion_files
    ds = dataset_factory(paths[:2], names[:2])
    summary = ood.compute_pyramid_embeddings(ds, "emb", model_name="resnet18", weights="random", progress=False)
    # resnet18: 64 + 64 + 128 + 256 + 512 channels = 4,096 columns at grid 2, within the bound
    assert summary["dim"] == 1024 * 4 <= DEFAULT_MAX_DIM and len(summary["config"]["backbone"]["levels"]) == 5
    summary = ood.compute_pyramid_embeddings(ds, "emb2", model_name="resnet34", weights="random", grid=3,
                                             progress=False)
    # grid 3: 9,216 columns for every level > DEFAULT_MAX_DIM -> only layer4 (512 x 9)
    assert summary["config"]["backbone"]["levels"] == ["layer4"] and summary["dim"] == 512 * 9
