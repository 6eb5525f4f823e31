"""Values a user made are never taken for the package's own: four gaps a probe reproduced on real datasets.

1. a field, run or label attribute a user named with the package's temporary prefix (``tmp_ood_notes``) was
   deleted by the repair that every write runs first;
2. a note set on some objects of a sample only (an undeclared attribute) went unseen and was overwritten;
3. pyramid embeddings wrote into (and then owned) a user's field made under the name of a deleted run's field;
4. a run replaced with ``overwrite=True`` took along a field of the old run that the new call reads.

Each test fails without the fix it covers.
"""

import fiftyone as fo
import fiftyone.core.fields as fof
import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs


def test_names_with_the_temporary_prefix_made_by_a_user_survive_repair_and_writes(dataset_factory):
    ds = dataset_factory([f"/tmp/uv_{i}.png" for i in range(12)], ["a", "b"] * 6)
    ds.set_values("emb", list(np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)))
    ds.set_values("tmp_ood_notes", [f"note {i}" for i in range(12)])  # the user's field
    sample = ds.first()
    sample["ground_truth"]["tmp_ood_note"] = "keep me"  # an undeclared attribute of the user's label
    sample.save()
    ds.register_run("tmp_ood_backup_mine", ds.init_run(method="mine"))  # a run of the user's
    ood.repair_ood_runs(ds)
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=2)  # every write repairs first
    ds.reload()
    assert ds.values("tmp_ood_notes") == [f"note {i}" for i in range(12)]
    assert ds.first()["ground_truth"]["tmp_ood_note"] == "keep me"
    assert "tmp_ood_backup_mine" in ds.list_runs()


@pytest.fixture
def boxes(dataset_factory, fashion_files):
    """3 real images with 2 boxes each in ``objects``; a curator's note ``emb`` on one box of the first sample."""
    paths, _ = fashion_files
    ds = dataset_factory(paths[:3])
    for i, sample in enumerate(ds):
        sample["objects"] = fo.Detections(detections=[
            fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.5, 0.5]) for _ in range(2)])
        if i == 0:
            sample["objects"].detections[1]["emb"] = "my note"  # on one object of two: nothing declared
        sample.save()
    return ds


def test_a_note_on_some_objects_only_is_never_overwritten(boxes, session_extractor):
    with pytest.raises(OODInputError, match=r"objects\.detections\.emb"):
        ood.compute_pyramid_embeddings(boxes, "emb", patches_field="objects", progress=False)
    assert [d.get_field("emb") if d.has_field("emb") else None for d in boxes.first()["objects"].detections] == \
        [None, "my note"]


def test_pyramid_embeddings_never_take_a_users_field_made_under_a_deleted_run_field(dataset_factory, fashion_files,
                                                                                     session_extractor):
    paths, _ = fashion_files
    ds = dataset_factory(paths[:4])
    ood.compute_pyramid_embeddings(ds, "emb", progress=False)
    ds.delete_sample_field("emb")  # by hand; the run record still lists it
    mine = [np.full(5, i, dtype=np.float32) for i in range(4)]
    ds.set_values("emb", mine)
    for overwrite in (True, False):
        with pytest.raises(OODInputError, match=r"field 'emb' .* is listed by run 'emb', but it is not the field"):
            ood.compute_pyramid_embeddings(ds, "emb", overwrite=overwrite, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(ds.values("emb"), mine))


def test_a_replaced_run_never_takes_a_field_the_new_call_reads(dataset_factory):
    ds = dataset_factory([f"/tmp/uv_r_{i}.png" for i in range(6)])
    fo_runs.write_and_record(ds, [("pred", ["a"] * 6, fof.StringField), ("score", [1.0] * 6, fof.FloatField)], "r",
                             kind="experiment")
    # redone reading its own earlier output 'pred' and writing only 'score': 'pred' stays (no run lists it now)
    fo_runs.write_and_record(ds, [("score", [2.0] * 6, fof.FloatField)], "r", kind="experiment", overwrite=True,
                             reads=["pred"])
    assert ds.values("pred") == ["a"] * 6 and ds.values("score") == [2.0] * 6
    assert ood.get_ood_run_info(ds, "r")["fields"] == ["score"]


def test_a_users_field_named_like_the_embeddings_partial_field_is_never_deleted(dataset_factory, fashion_files,
                                                                               session_extractor):
    """``tmp_ood_partial_<field>`` is where embeddings of ``<field>`` are computed; one a user made (no record
    lists it, no mark) used to be deleted as a leftover by the first embeddings call under that name."""
    paths, _ = fashion_files
    ds = dataset_factory(paths[:4])
    ds.set_values("tmp_ood_partial_myemb", [f"note {i}" for i in range(4)])
    for overwrite in (False, True):
        with pytest.raises(OODInputError, match=r"'tmp_ood_partial_myemb' that no fiftyone-ood run made"):
            ood.compute_pyramid_embeddings(ds, "myemb", overwrite=overwrite, progress=False)
    ds.reload()
    assert ds.values("tmp_ood_partial_myemb") == [f"note {i}" for i in range(4)]
    assert ds.get_field("myemb") is None and "myemb" not in fo_runs.list_ood_runs(ds)


def test_the_partial_field_a_failed_embeddings_call_left_is_still_cleaned_up(dataset_factory, fashion_files,
                                                                            session_extractor, monkeypatch):
    """The other side of the test above: the package's own leftover (the partial field made, the call stopped
    before its record) carries the package's mark from its creation and is replaced by the next call."""
    paths, _ = fashion_files
    ds = dataset_factory(paths[:4])

    def stopped(*args, **kwargs):
        raise RuntimeError("stopped before the record")

    monkeypatch.setattr(fo_runs, "register_run", stopped)
    with pytest.raises(RuntimeError, match="stopped before the record"):
        ood.compute_pyramid_embeddings(ds, "emb", progress=False)
    monkeypatch.undo()
    ds.reload()
    assert ds.get_field("tmp_ood_partial_emb") is not None and "emb" not in fo_runs.list_ood_runs(ds)
    ood.compute_pyramid_embeddings(ds, "emb", progress=False)
    ds.reload()
    assert ds.get_field("tmp_ood_partial_emb") is None and all(v is not None for v in ds.values("emb"))
