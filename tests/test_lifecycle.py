"""Run records and fields through the ordinary dataset lifecycle: what FiftyOne users do to a dataset between two
calls of this package (``delete_sample_field``, ``rename_sample_field``, ``rename_run`` / ``delete_run`` through
FiftyOne's own API), then scoring, flagging and deleting again. Gaps a probe reproduced on real datasets:

1. a score field (or its p-values) deleted or renamed by hand could not be scored again with ``overwrite=True``:
   the absent field was called "deleted and made again outside fiftyone-ood", a field holding the user's data;
2. vectors a user put under the name of an embeddings run's field (the run's own field renamed away) were scored
   as that run's: the score record claimed its backbone, the default detector split the vectors into its pyramid
   levels, and a score run computed from the real embeddings was overwritten from a view with the user's vectors;
3. a score run renamed with FiftyOne's ``dataset.rename_run`` lost its flags runs: ``list_flag_runs`` no longer
   found them, re-flagging was refused and deleting the score run left them (and their tags) behind; flags whose
   score run FiftyOne's ``delete_run`` removed could not be redone from the same scores, with an error naming
   ``None``;
4. the percentile rule, defaulting to the trusted view a score run recorded, said only "reference view is empty"
   once a field the view's stages read was renamed (or its samples deleted), naming neither the run nor the fix.

Real FiftyOne datasets on the tests' MongoDB; stored random embeddings except where a real embeddings run is needed.
Each test fails without the fix it covers.
"""

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import commit
from scored_helpers import scored_dataset


@pytest.fixture
def scored(dataset_factory):
    """30 samples, 10 tagged 'trusted', random embeddings 'emb'; k-NN score run 's' (with 's_pvalue') against the
    trusted samples and its flags run 's_flag' tagging 5 samples 'look'; one more sample tagged 'look' by hand."""
    ds = scored_dataset(dataset_factory, "lifecycle")
    hand = ds.match_tags("look", bool=False).first()
    hand.tags.append("look")
    hand.save()
    return ds, hand.id


def _owns_its_fields(ds, key):
    info = ood.get_ood_run_info(ds, key)
    marks = [ds.get_field(f).info.get("fiftyone_ood_mark") for f in info["fields"]]
    return marks == info["field_marks"]


# --------------------------------------------------------------------------- 1. a field deleted or renamed by hand


@pytest.mark.parametrize("gone", ["s", "s_pvalue"])
def test_a_score_field_deleted_by_hand_is_scored_again_with_overwrite(scored, gone):
    ds, _ = scored
    ds.delete_sample_field(gone)
    with pytest.raises(OODInputError, match=f"has no field {gone!r}|already exists"):
        if gone == "s":  # what the error of a read says to do: compute the scores again
            ood.evaluate_ood_run(ds, "s", gt_tag="trusted")
        else:
            ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3, reference="trusted")
    out = ood.compute_ood_scores(ds, "emb", "s", method="knn", k=4, reference="trusted", overwrite=True)
    assert out["num_scored"] == len(ds) == ds.count("s") == ds.count("s_pvalue")
    assert ood.get_ood_run_info(ds, "s")["detector"]["k"] == 4 and _owns_its_fields(ds, "s")
    assert commit.internal_fields(ds) == []
    # what stays refused: a field of the user's made under the name after deleting it
    ds.delete_sample_field(gone)
    ds.set_values(gone, [0.5] * len(ds))
    with pytest.raises(OODInputError, match=f"{gone!r} .* is listed by run 's', but it is not the field that run"):
        ood.compute_ood_scores(ds, "emb", "s", method="knn", k=5, reference="trusted", overwrite=True)
    assert ds.values(gone) == [0.5] * len(ds)


def test_a_score_field_renamed_by_hand_stays_the_users_and_the_run_is_scored_again(scored):
    ds, _ = scored
    before = ds.values("s")
    ds.rename_sample_field("s", "s_kept")
    out = ood.compute_ood_scores(ds, "emb", "s", method="knn", k=4, reference="trusted", overwrite=True)
    assert out["num_scored"] == ds.count("s") == len(ds) and _owns_its_fields(ds, "s")
    assert ds.values("s_kept") == before  # the renamed copy is left as it is, and belongs to no run
    with pytest.raises(OODInputError, match="'s_kept' exists .* no fiftyone-ood run wrote it"):
        ood.compute_ood_scores(ds, "emb", "s_kept", method="knn", k=4, reference="trusted", overwrite=True)
    assert sorted(ood.delete_ood_run(ds, "s")) == ["s", "s_flag", "s_pvalue"]
    assert ds.values("s_kept") == before


# --------------------------------------------------------------------------- 2. the embeddings field renamed away


def test_vectors_put_under_a_renamed_embeddings_runs_name_are_not_taken_for_its_output(dataset_factory,
                                                                                      fashion_files,
                                                                                      session_extractor):
    from ood_core.fo.inventory import embedding_choices

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(4) for j in range(6)]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx],
                         [["trusted"] if j < 3 else [] for j in [i % 20 for i in idx]])
    ood.compute_pyramid_embeddings(ds, "emb", progress=False)
    assert len(ood.get_ood_run_info(ds, "emb")["backbone"]["levels"]) > 1
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3, reference="trusted")
    scores = ds.values("s")
    ds.rename_sample_field("emb", "emb_model")  # the run's own vectors, kept under another name
    dim = len(ds.first()["emb_model"])
    ds.set_values("emb", list(np.random.default_rng(1).normal(size=(len(ds), dim)).astype(np.float32)))

    # the user's vectors: scored as a plain vector field, not as pyramid levels of the run's backbone
    ood.compute_ood_scores(ds, "emb", "mine", reference="trusted", label_field="ground_truth")
    info = ood.get_ood_run_info(ds, "mine")
    assert info["backbone"] is None and info["detector"]["level_dims"] is None
    # a run computed from the model's vectors is not replaced from a view with the user's
    with pytest.raises(OODInputError, match="run .s. was computed with other .*backbone"):
        ood.compute_ood_scores(ds.match_tags("trusted", bool=False).limit(4), "emb", "s", method="knn", k=3,
                               reference="trusted", overwrite=True)
    assert ds.values("s") == scores
    assert dict(embedding_choices(ds))["emb"] == "vector field"


# --------------------------------------------------------------------------- 3. runs renamed or deleted by FiftyOne


def test_a_score_run_renamed_with_fiftyones_rename_run_keeps_its_flags(scored):
    ds, hand = scored
    ds.rename_run("s", "s2")  # FiftyOne's own API: the flags run still names 's'
    assert ood.list_flag_runs(ds, "s2") == ["s_flag"]
    ood.compute_ood_scores(ds, "emb", "s", run_key="s2", method="knn", k=4, reference="trusted", overwrite=True)
    assert ood.list_flag_runs(ds, "s2") == ["s_flag"]  # as flags naming the run's key stay with its new scores
    out = ood.flag_samples(ds, "s2", rule="top_n", value=3, tag="look", flag_field="s_flag", overwrite=True)
    assert out["num_flagged"] == 3 and ood.get_flag_info(ds, "s_flag")["score_run"] == "s2"
    ds.rename_run("s2", "s3")
    assert ood.list_flag_runs(ds, "s3") == ["s_flag"]
    assert sorted(ood.delete_ood_run(ds, "s3")) == ["s", "s_flag", "s_pvalue"]
    assert ood.list_ood_runs(ds) == [] and ds.match_tags("look").values("id") == [hand]


def test_flags_of_a_score_run_deleted_with_fiftyones_delete_run(scored):
    ds, hand = scored
    ds.delete_run("s")  # FiftyOne's own API: the field 's' stays, belonging to no run; the flags name 's'
    assert ood.list_flag_runs(ds, "s") == ["s_flag"]
    # flags of other scores are still never replaced, and the error names both
    ood.compute_ood_scores(ds, "emb", "t", method="knn", k=3, reference="trusted")
    with pytest.raises(OODInputError, match="holds the flags of score run 's', not of 't'.*flag_field='t_flag'"):
        ood.flag_samples(ds, "t", rule="top_n", value=2, tag="look", flag_field="s_flag", overwrite=True)
    # re-flagging the same scores (the field) replaces the flags run made from them, and its tags
    out = ood.flag_samples(ds, "s", rule="top_n", value=2, tag="look", overwrite=True)
    assert out["num_flagged"] == 2 and hand in ds.match_tags("look").values("id")
    assert len(ds.match_tags("look")) == 3
    ds.delete_run("t")
    with pytest.raises(OODInputError, match="holds the flags of score field 's', not of 't'.*flag_field='t_flag'"):
        ood.flag_samples(ds, "t", rule="top_n", value=2, tag="look", flag_field="s_flag", overwrite=True)
    assert ood.delete_flags(ds, "s_flag")["tags_removed"] == 2 and ds.match_tags("look").values("id") == [hand]


# --------------------------------------------------------------------------- 4. a recorded reference view gone empty


def test_a_recorded_reference_view_matching_nothing_now_is_named_with_the_fix(scored):
    from fiftyone import ViewField as F

    ds, _ = scored
    ds.set_values("split", ["train" if i < 10 else "test" for i in range(len(ds))])
    ood.compute_ood_scores(ds, "emb", "v", method="knn", k=3, reference=ds.match(F("split") == "train"))
    ds.rename_sample_field("split", "subset")
    fix = (r"score run 'v' recorded as its reference a view of 10 samples.*matches no sample.*renamed or deleted"
           r".*pass reference=")
    with pytest.raises(OODInputError, match=fix):
        ood.flag_samples(ds, "v", rule="percentile")
    out = ood.flag_samples(ds, "v", rule="percentile", reference=ds.match(F("subset") == "train"))
    assert out["rule"]["num_reference"] == 10
