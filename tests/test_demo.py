"""The main job end to end on a small version of the demo dataset (real Fashion-MNIST files)."""

import io
import uuid

import numpy as np


def test_demo_pipeline_runs_and_reports_both_tasks(tmp_path):
    import fiftyone as fo

    from ood_core import demo
    from ood_core.fo import runs as fo_runs

    name = f"demo-{uuid.uuid4().hex[:6]}"
    ds = demo.build_demo_dataset(num_trusted=120, num_test_id=60, num_test_ood=20, label_noise=0.2,
                                 images_dir=str(tmp_path), name=name)
    try:
        assert len(ds) == 200 and len(ds.match_tags("trusted")) == 120
        assert sum(ds.values("is_ood")) == 20 and sum(ds.values("label_is_wrong")) == 12
        # held-out classes never appear among the given labels, nor in the trusted set
        assert not set(ds.values("ground_truth.label")) & set(demo.HELD_OUT)
        assert not any(ds.match_tags("trusted").values("is_ood"))
        out = io.StringIO()
        results = demo.run_demo(ds, batch_size=32, num_workers=0, lof_k=10, progress=False, out=out)
        text = out.getvalue()
        assert "OOD task" in text and "Wrong-label task" in text and "AUROC" in text
        assert "wrong label = positive class" in text and "OOD = positive class" in text
        for key in ("ood_pyramid", "ood_knn", "ood_previous", "ood_mahalanobis", "label_issue", "label_issue_lof",
                    "label_issue_no_lda", "label_issue_no_refit"):
            assert 0.0 <= results[key]["auroc"] <= 1.0
        # real pretrained features separate held-out classes and flipped labels well above chance
        assert results["ood_pyramid"]["auroc"] > 0.7 and results["label_issue"]["auroc"] > 0.7
        assert "pyramid k-NN" in text and "previous default" in text
        assert set(fo_runs.list_ood_runs(ds)) >= {"ood_embeddings", "ood_pyramid", "ood_knn", "label_issue",
                                                  "label_issue_lof"}
        assert fo_runs.get_ood_run_info(ds, "ood_pyramid")["detector"]["method"] == "pyramid_knn"
        assert "ood_umap" in ds.list_brain_runs()
        assert np.isfinite(ds.match_tags("test").values("ood_pyramid")).all()
    finally:
        fo.delete_dataset(name)


def test_the_demo_never_replaces_a_dataset_it_did_not_build(tmp_path):
    """Rebuilding deleted any dataset of the demo's name, a user's too."""
    import fiftyone as fo
    import pytest

    from ood_core import demo
    from ood_core.errors import OODInputError

    name = f"demo-{uuid.uuid4().hex[:6]}"
    mine = fo.Dataset(name)
    try:
        mine.add_sample(fo.Sample(filepath=str(tmp_path / "x.png"), my_notes="keep"))
        with pytest.raises(OODInputError, match=rf"a dataset named '{name}' exists and was not built by the demo"):
            demo.build_demo_dataset(num_trusted=10, num_test_id=5, num_test_ood=5, images_dir=str(tmp_path), name=name)
        assert fo.load_dataset(name).values("my_notes") == ["keep"]
        assert not [n for n in fo.list_datasets() if n.startswith(f"{name}-building-")]
    finally:
        mine.delete()
    first = demo.build_demo_dataset(num_trusted=10, num_test_id=5, num_test_ood=5, images_dir=str(tmp_path), name=name)
    try:
        again = demo.build_demo_dataset(num_trusted=10, num_test_id=5, num_test_ood=5, images_dir=str(tmp_path),
                                        name=name)  # its own dataset: rebuilt, under the same name
        assert again.name == name and again.persistent and len(again) == 20 and first.deleted
        assert [n for n in fo.list_datasets() if n.startswith(name)] == [name]
    finally:
        fo.delete_dataset(name)
