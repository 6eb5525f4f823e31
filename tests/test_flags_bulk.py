"""Flags are staged in bulk (``ood_core.fo.bulk_values.set_by_id``: one ``update_many`` per value) instead of one
update per sample (``set_values``); the documents must end exactly as ``set_values`` leaves them."""

import fiftyone.core.fields as fof
import numpy as np
import pytest
from bson import ObjectId

import ood_core as ood
from ood_core.fo import commit
from ood_core.fo import runs as fo_runs
from ood_core.fo.bulk_values import set_by_id
from ood_core.fo.items import sample_ids

VALUES = [True, False, None, False, True, False, False, None, False, False, True, False]


@pytest.fixture
def ds(dataset_factory):
    return dataset_factory([f"/tmp/bulk_{i}.png" for i in range(len(VALUES))])


def _stored(ds, path):
    """Per document (by id): whether it holds the key ``path`` and its stored value."""
    return {str(d["_id"]): (path in d, d.get(path)) for d in ds._sample_collection.find({})}


def test_set_by_id_leaves_the_documents_as_set_values_does(ds):
    ids = ds.values("id")
    for path in ("by_sample", "in_bulk"):
        ds.add_sample_field(path, fof.BooleanField)
    before = dict(zip(ids, ds.values("last_modified_at")))
    ds.set_values("by_sample", VALUES)
    assert set_by_id(ds, "in_bulk", dict(zip(ids, VALUES))) is True
    assert _stored(ds, "in_bulk") == _stored(ds, "by_sample")
    assert all(t > before[i] for i, t in zip(ids, ds.values("last_modified_at")))
    ds.reload()
    assert ds.values("in_bulk") == VALUES


def test_set_by_id_writes_only_the_given_samples(ds):
    ids = ds.values("id")
    ds.add_sample_field("part", fof.BooleanField)
    assert set_by_id(ds, "part", {ids[0]: True, ids[1]: None}) is True
    stored = _stored(ds, "part")
    assert stored[ids[0]] == (True, True) and stored[ids[1]] == (True, None)
    assert not any(stored[i][0] for i in ids[2:])


def test_set_by_id_leaves_other_values_to_set_values(ds):
    ids = ds.values("id")
    ds.add_sample_field("flag", fof.BooleanField)
    ds.add_sample_field("score", fof.FloatField)
    assert set_by_id(ds, "undeclared", dict.fromkeys(ids, True)) is False
    assert set_by_id(ds, "ground_truth.label", dict.fromkeys(ids, "x")) is False
    assert set_by_id(ds, "flag", dict.fromkeys(ids, [True])) is False
    many = {str(ObjectId()): float(k) for k in range(100)}  # more distinct values than one update each is worth
    assert set_by_id(ds, "score", many) is False
    with pytest.raises(ValueError, match="Invalid value for field 'flag'"):
        set_by_id(ds, "flag", dict.fromkeys(ids, "yes"))
    assert ds.count("flag") == 0 and ds.count("score") == 0  # nothing written


def test_staging_a_dict_of_many_values_falls_back_to_set_values(ds):
    ids = ds.values("id")
    scores = {i: 0.5 + k for k, i in enumerate(ids)}
    tmp = commit.reserve_tmp_path("s")
    commit.stage_values(ds, "s", {i: scores[i] for i in ids[::-1]}, fof.FloatField, tmp=tmp)
    assert dict(zip(ds.values("id"), ds.values(tmp))) == scores
    commit.discard(ds, [tmp])


def test_sample_ids_of_a_dataset_and_of_a_view(ds):
    assert sorted(sample_ids(ds)) == sorted(ds.values("id"))
    assert sorted(sample_ids(ds.view())) == sorted(ds.values("id"))
    view = ds.skip(3).limit(4)
    assert sample_ids(view) == view.values("id")


def test_flags_of_samples_the_callers_ids_leave_out_are_none(ds):
    """``item_scores`` that leave out samples of the view: those samples' flags are None, as before the bulk write
    (their flags were read from the view's ids, not from the caller's)."""
    scores = np.linspace(0, 1, len(VALUES))
    fo_runs.write_and_record(ds, [("ood", scores.tolist())], "ood", kind="ood_scores", score_field="ood")
    ids = ds.values("id")
    out = ood.flag_samples(ds, "ood", rule="threshold", value=0.5, tag="look", item_scores=(ids[2:], scores[2:]))
    flags = ds.values("ood_flag")
    assert flags[:2] == [None, None] and flags[2:] == [bool(s >= 0.5) for s in scores[2:]]
    assert out["num_scored"] == len(VALUES) - 2 and out["num_flagged"] == sum(s >= 0.5 for s in scores[2:])
    assert sorted(ds.match_tags("look").values("id")) == sorted(i for i, f in zip(ids, flags) if f)


def test_reflagging_a_view_keeps_the_flags_outside_it(ds):
    scores = np.linspace(0, 1, len(VALUES))
    fo_runs.write_and_record(ds, [("ood", scores.tolist())], "ood", kind="ood_scores", score_field="ood")
    ood.flag_samples(ds, "ood", rule="threshold", value=0.5)
    first = ds.values("ood_flag")
    view = ds.limit(6)
    out = ood.flag_samples(view, "ood", rule="threshold", value=0.2, overwrite=True)
    assert ds.values("ood_flag") == [bool(s >= 0.2) for s in scores[:6]] + first[6:]
    assert out["num_flagged"] == sum(ds.values("ood_flag")) and out["num_scored"] == len(VALUES)
