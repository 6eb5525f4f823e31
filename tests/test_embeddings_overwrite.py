"""Overwriting pyramid embeddings: until the new field is committed, the old field keeps the record describing it.

An overwrite (other projection, dtype, backbone) records its progress apart from the complete run, so a failure,
Ctrl-C or a killed process never leaves the old vectors under a record of the new settings; a call with the new
settings resumes the overwrite, a call with the old ones sees the old run.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo.embedding_runs import side_key
from ood_core.images import ImageLoadError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(batch_size=8, chunk_size=8, progress=False)
#: the session extractor's settings (tests/conftest.py): a worker process builds the same backbone
SETTINGS = dict(model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool", grid=1)


@pytest.fixture
def embedded(dataset_factory, fashion_files, session_extractor, tmp_path):
    """20 images with complete 176-d embeddings ``emb``, then an unreadable image added (the 21st sample)."""
    import fiftyone as fo

    paths, names = fashion_files
    ds = dataset_factory(paths[:20], names[:20])
    ood.compute_pyramid_embeddings(ds, "emb", **FAST)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    ds.add_sample(fo.Sample(filepath=str(bad)))
    return ds, ood.get_ood_run_info(ds, "emb"), np.stack(ds.values("emb")[:20])


def _fail_overwrite(ds):
    """The probe: an overwrite with a 16-d projection that stops at the unreadable image (after 16 items)."""
    with pytest.raises(ImageLoadError, match="bad.png"):
        ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, project_dim=16, skip_failures=False, **FAST)


def _assert_old_run_intact(ds, old_info, old):
    ds.reload()
    info = ood.get_ood_run_info(ds, "emb")
    assert info["status"] == "complete" and info["fields"] == ["emb"]
    assert info["projection"] == old_info["projection"] and info["backbone"] == old_info["backbone"]
    assert info["backbone"]["dim"] == old.shape[1] == 176
    values = ds.values("emb")
    np.testing.assert_array_equal(np.stack(values[:20]), old)
    assert values[20] is None
    assert not any(key.startswith("tmp_ood_") for key in ood.list_ood_runs(ds))  # the overwrite's is internal


def test_failed_overwrite_keeps_the_old_field_under_its_complete_record(embedded):
    ds, old_info, old = embedded
    _fail_overwrite(ds)
    _assert_old_run_intact(ds, old_info, old)
    # the overwrite's progress is kept apart, for a resume with its settings
    assert len(ds.exists("tmp_ood_partial_emb")) == 16
    assert ds.get_run_info(side_key("emb")).config.projection["n_components"] == 16

    # scoring reads the old field under the old record
    scored = ds.exists("emb")
    summary = ood.compute_ood_scores(scored, "emb", "s", k=3)
    assert summary["num_scored"] == 20 and len(ds.exists("s")) == 20
    assert ood.get_ood_run_info(ds, "s")["backbone"] == old_info["backbone"]

    # a call with the old settings sees the old complete run (no false "stored projection 16"): it fills in
    out = ood.compute_pyramid_embeddings(ds, "emb", **FAST)
    assert out["status"] == "complete" and out["num_failed"] == 1 and out["num_computed"] == 0
    _assert_old_run_intact(ds, old_info, old)
    # still refused: settings that are neither the old run's nor the pending overwrite's
    with pytest.raises(OODInputError, match="dtype: stored 'float32' vs requested 'float16'.*pending"):
        ood.compute_pyramid_embeddings(ds, "emb", dtype="float16", **FAST)


def test_interrupted_overwrite_is_resumed_with_its_settings_and_commits_a_matching_record(
        embedded, session_extractor, monkeypatch):
    ds, old_info, old = embedded
    _fail_overwrite(ds)
    # meanwhile, a call with the old settings fills in the old field (the pending overwrite stays)
    assert ood.compute_pyramid_embeddings(ds, "emb", **FAST)["status"] == "complete"
    assert ood.get_ood_run_info(ds, "emb")["projection"] == old_info["projection"]
    real_iter = type(session_extractor).iter_extract
    attempted = []

    def counting(self, items, **kw):
        attempted.append(len(items))
        return real_iter(self, items, **kw)

    monkeypatch.setattr(type(session_extractor), "iter_extract", counting)
    out = ood.compute_pyramid_embeddings(ds, "emb", project_dim=16, skip_failures=True, **FAST)
    assert out["resumed"] and out["status"] == "complete" and attempted == [5]  # 4 left + the unreadable one
    assert out["num_embedded"] == 20 and out["num_failed"] == 1
    ds.reload()
    info = ood.get_ood_run_info(ds, "emb")
    assert info["status"] == "complete" and info["fields"] == ["emb"]
    assert info["projection"]["n_components"] == 16 and info["backbone"] == old_info["backbone"]
    values = ds.values("emb")
    assert values[20] is None and all(v.shape == (16,) for v in values[:20])
    assert not ds.has_run(side_key("emb")) and ds.get_field("tmp_ood_partial_emb") is None
    # the same vectors as one uninterrupted computation with these settings
    ood.compute_pyramid_embeddings(ds, "ref", project_dim=16, **FAST)
    np.testing.assert_allclose(np.stack(values[:20]), np.stack(ds.values("ref")[:20]), rtol=1e-4, atol=1e-5)
    # the old settings are now the ones refused
    with pytest.raises(OODInputError, match=r"projection: stored \{.*'n_components': 16.*\} vs requested None"):
        ood.compute_pyramid_embeddings(ds, "emb", **FAST)


def test_interrupted_overwrite_redone_with_overwrite_commits_the_new_field(embedded, session_extractor,
                                                                            monkeypatch):
    ds, old_info, old = embedded
    real_iter = type(session_extractor).iter_extract

    def ctrl_c_after_two_batches(self, items, **kw):
        for n, out in enumerate(real_iter(self, items, **kw)):
            if n == 2:
                raise KeyboardInterrupt
            yield out

    monkeypatch.setattr(type(session_extractor), "iter_extract", ctrl_c_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, project_dim=16, **FAST)
    _assert_old_run_intact(ds, old_info, old)
    monkeypatch.undo()

    ds.delete_samples(ds.skip(20))  # the unreadable image goes; the overwrite is redone from scratch
    out = ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, project_dim=16, skip_failures=False, **FAST)
    assert out["status"] == "complete" and not out["resumed"] and out["num_computed"] == 20
    info = ood.get_ood_run_info(ds, "emb")
    assert info["status"] == "complete" and info["projection"]["n_components"] == 16 and info["fields"] == ["emb"]
    assert np.stack(ds.values("emb")).shape == (20, 16)
    assert not ds.has_run(side_key("emb")) and ds.get_field("tmp_ood_partial_emb") is None


KILLED_WORKER = """
import os, sys
import fiftyone as fo
import ood_core as ood
from ood_core.features import PyramidExtractor

real_iter = PyramidExtractor.iter_extract

def killed_after_two_batches(self, items, **kw):
    for n, out in enumerate(real_iter(self, items, **kw)):
        if n == 2:
            os._exit(9)  # as kill -9: no exception handler, no finally block runs
        yield out

PyramidExtractor.iter_extract = killed_after_two_batches
ds = fo.load_dataset(sys.argv[1])
ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, project_dim=16, batch_size=8, chunk_size=8,
                               progress=False, model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool",
                               grid=1)
"""


def test_killed_overwrite_keeps_the_old_record_and_is_resumed(dataset_factory, fashion_files, extractor):
    paths, names = fashion_files
    ds = dataset_factory(paths[:20], names[:20])
    ds.persistent = True  # visible to the worker process
    ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    old_info, old = ood.get_ood_run_info(ds, "emb"), np.stack(ds.values("emb"))
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", FIFTYONE_OOD_LOCK_LEASE="1")
    proc = subprocess.run([sys.executable, "-c", KILLED_WORKER, ds.name], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)
    assert proc.returncode == 9, proc.stderr[-3000:]
    ds.reload()
    info = ood.get_ood_run_info(ds, "emb")
    assert info["status"] == "complete" and info["projection"] == old_info["projection"]
    np.testing.assert_array_equal(np.stack(ds.values("emb")), old)
    assert len(ds.exists("tmp_ood_partial_emb")) == 16
    # the killed overwrite is resumed by a call with its settings (the dead worker's lock lease runs out)
    out = ood.compute_pyramid_embeddings(ds, "emb", project_dim=16, **SETTINGS, **FAST)
    assert out["resumed"] and out["num_computed"] == 4 and out["status"] == "complete"
    info = ood.get_ood_run_info(ds, "emb")
    assert info["projection"]["n_components"] == 16 and np.stack(ds.values("emb")).shape == (20, 16)
