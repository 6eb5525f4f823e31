"""Overwriting a score run from a view keeps the other samples' scores: only when they stay on the new record's
scale (same reference, classes, vocabulary, levels; scores that do not depend on the samples scored together)."""

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("dog cat horse cow sheep bird fish whale car truck bus train boat bridge tower castle mountain lake ocean "
         "desert forest rocket piano camera sofa apple banana pizza bread cheese").split()


@pytest.fixture
def vectors(dataset_factory):
    """40 samples with random 8-d embeddings; 20 tagged 'trusted', 10 others 'other_ref'."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/view_overwrite_{i}.png" for i in range(40)])
    ds.set_values("emb", list(rng.normal(size=(40, 8)).astype(np.float32)))
    ds.skip(20).tag_samples("trusted")
    ds.skip(10).limit(10).tag_samples("other_ref")
    return ds


def _unchanged(ds, field, before, record):
    ds.reload()
    assert ds.values(field) == before
    info = ood.get_ood_run_info(ds, field)
    assert {k: info.get(k) for k in record} == record


def test_another_reference_from_a_view_is_refused(vectors):
    ds = vectors
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3, reference="trusted")
    before, pvalues = ds.values("s"), ds.values("s_pvalue")
    record = {"reference": ood.get_ood_run_info(ds, "s")["reference"]}
    assert record["reference"]["tag"] == "trusted" and record["reference"]["num_reference"] == 20
    with pytest.raises(OODInputError, match=r"run 's' was computed with other reference than this call"):
        ood.compute_ood_scores(ds.limit(5), "emb", "s", method="knn", k=3, reference="other_ref", overwrite=True)
    _unchanged(ds, "s", before, record)
    assert ds.values("s_pvalue") == pvalues
    # one trusted sample more: the p-values (fractions of the trusted samples) would change scale as well
    ds.limit(1).tag_samples("trusted")
    with pytest.raises(OODInputError, match=r"other reference"):
        ood.compute_ood_scores(ds.limit(5), "emb", "s", method="knn", k=3, reference="trusted", overwrite=True)
    _unchanged(ds, "s", before, record)
    # the same number of trusted samples, but one other sample among them: refused as well
    ds.limit(1).untag_samples("trusted")
    first_trusted = ds.match_tags("trusted").first().id
    ds.select(first_trusted).untag_samples("trusted")
    ds.skip(19).limit(1).tag_samples("trusted")
    assert len(ds.match_tags("trusted")) == 20
    with pytest.raises(OODInputError, match=r"other reference"):
        ood.compute_ood_scores(ds.limit(5), "emb", "s", method="knn", k=3, reference="trusted", overwrite=True)
    _unchanged(ds, "s", before, record)
    ds.skip(19).limit(1).untag_samples("trusted")
    ds.select(first_trusted).tag_samples("trusted")
    # a detector parameter that changes the scale (k) is refused too; how neighbours are searched is not
    with pytest.raises(OODInputError, match=r"other detector"):
        ood.compute_ood_scores(ds.limit(5), "emb", "s", method="knn", k=2, reference="trusted", overwrite=True)
    _unchanged(ds, "s", before, record)
    ds.limit(5).set_values("emb", list(np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)))
    ood.compute_ood_scores(ds.limit(5), "emb", "s", method="knn", k=3, reference="trusted", overwrite=True,
                           neighbor_backend="sklearn")
    after = ds.values("s")
    assert after[5:20] == before[5:20] and after[:5] != before[:5]  # the same reference: replaced in the view


def test_another_level_choice_from_a_view_is_refused(dataset_factory, fashion_files):
    """``score_with_config`` (an auto_config choice) from a view with other pyramid levels."""
    paths, names = fashion_files
    ds = dataset_factory(paths[:24], names[:24])
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2], grid=1,
                                   progress=False)
    ds.skip(12).tag_samples("trusted")
    config = {"embeddings_field": "emb", "method": "knn", "k": 3, "reference": {"tag": "trusted"}}
    ood.score_with_config(ds, "c", dict(config, level_indices=[1]))
    before = ds.values("c")
    with pytest.raises(OODInputError, match=r"run 'c' was computed with other level_indices than this call"):
        ood.score_with_config(ds.limit(5), "c", dict(config, level_indices=[2]), overwrite=True)
    assert ds.values("c") == before
    ood.compute_pyramid_embeddings(ds.limit(5), "emb", model_name="tf_efficientnet_lite0", levels=[1, 2], grid=1,
                                   progress=False, overwrite=True)  # the view recomputed: the same settings
    ds.limit(5).set_values("emb", [v[::-1].copy() for v in ds.limit(5).values("emb")])  # (new values, same scale)
    ood.score_with_config(ds.limit(5), "c", dict(config, level_indices=[1]), overwrite=True)
    assert ds.values("c")[5:12] == before[5:12] and ds.values("c")[:5] != before[:5]
    # the field recomputed with other levels: the other samples' scores came from other embeddings
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[2, 3], grid=1,
                                   progress=False, overwrite=True)
    with pytest.raises(OODInputError, match=r"run 'c' was computed with other backbone"):
        ood.score_with_config(ds.limit(5), "c", dict(config, level_indices=[2]), overwrite=True)


@pytest.fixture
def clip_ds(dataset_factory, fashion_files, tiny_clip, tmp_path):
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(10) for j in range(3)]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx])
    ood.compute_clip_embeddings(ds, "clip", model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors),
                                progress=False)
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS + ["red\tadj", "furry\tadj"]) + "\n")
    return ds, dict(embeddings_field="clip", word_list=str(words), num_negatives=12, num_groups=3,
                    cache_dir=str(tmp_path / "cache"), progress=False)


def test_clip_runs_from_a_view_keep_their_classes_and_adaneg_is_whole_set_only(clip_ds):
    ds, kw = clip_ds
    ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth", **kw)
    before, labels = ds.values("nl"), ds.values("neglabel_prediction.label")
    with pytest.raises(OODInputError, match=r"run 'nl' was computed with other label_field, id_labels "):
        ood.compute_neglabel_scores(ds.limit(5), "nl", id_labels=["airplane", "ocean"], overwrite=True, **kw)
    assert ds.values("nl") == before and ds.values("neglabel_prediction.label") == labels
    # the same classes and vocabulary: zero-shot scores are each image's own, so a view is replaced alone
    ood.compute_neglabel_scores(ds.limit(5), "nl", label_field="ground_truth", overwrite=True, **kw)
    assert ds.values("nl")[5:] == before[5:]
    np.testing.assert_allclose(ds.values("nl")[:5], before[:5], rtol=1e-5)  # (the same computation)
    # AdaNeg adapts to the set it scores: never replaced from a view
    adaneg = dict(kw, label_field="ground_truth", memory_size=2, gap=0.2)
    ood.compute_adaneg_scores(ds, "ada", **adaneg)
    ada = ds.values("ada")
    with pytest.raises(OODInputError, match=r"run 'ada': AdaNeg's memory adapts to the images it scores"):
        ood.compute_adaneg_scores(ds.limit(5), "ada", overwrite=True, **adaneg)
    assert ds.values("ada") == ada


def test_wrong_label_scores_from_a_view_are_refused(vectors):
    """A wrong-label score weighs a label against the samples scored with it: from a view, the others would keep
    votes from another set under the new record."""
    ds = vectors
    ds.set_values("gt", [__import__("fiftyone").Classification(label="ab"[i % 2]) for i in range(len(ds))])
    ood.compute_label_issues(ds, "gt", "emb", "li", method="label_agreement", k=5)
    before = ds.values("li")
    with pytest.raises(OODInputError, match=r"run 'li': a wrong-label score weighs each sample's label against"):
        ood.compute_label_issues(ds.limit(20), "gt", "emb", "li", method="label_agreement", k=5, overwrite=True)
    _unchanged(ds, "li", before, {"kind": "label_issues"})
    ood.compute_label_issues(ds, "gt", "emb", "li", method="label_agreement", k=5, overwrite=True)  # whole set


def test_re_flagging_a_view_leaves_the_tags_outside_it_as_the_curator_left_them(vectors):
    ds = vectors
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=2, reference="trusted")
    ood.flag_samples(ds, "s", rule="top_n", value=6, tag="ood")
    flagged = ds.match_tags("ood").values("id")
    outside, dismissed = flagged[0], flagged[1]
    ds.select(dismissed).untag_samples("ood")  # the curator disagrees with one flag outside the view
    view = ds.exclude([outside, dismissed])
    ood.flag_samples(view, "s", rule="top_n", value=4, tag="ood", overwrite=True)
    tagged = set(ds.match_tags("ood").values("id"))
    assert dismissed not in tagged and outside in tagged
    info = ood.get_flag_info(ds, "s_flag")
    assert dismissed not in info["tagged_ids"] and outside in info["tagged_ids"]
    # later, a tag the curator puts back by hand is theirs: deleting the flags run leaves it
    ds.select(dismissed).tag_samples("ood")
    ood.delete_ood_run(ds, "s_flag")
    assert set(ds.match_tags("ood").values("id")) == {dismissed}


def test_other_settings_from_a_view_are_refused_before_scoring(vectors):
    """The settings alone tell (other k, reference, embeddings, no reference): refused before the detector is
    fitted, not after minutes of scoring; the steps the call reported say how far it got."""
    ds = vectors
    ood.compute_ood_scores(ds, "emb", "s", k=3, reference="trusted", progress=False)
    before = ds.values("s")
    ds.set_values("emb2", ds.values("emb"))
    for change, why in (({"k": 2}, "other detector"), ({"reference": "other_ref"}, "other reference"),
                        ({"embeddings_field": "emb2"}, "other embeddings_field"),
                        ({"reference": None}, "without a trusted reference")):
        steps = []
        call = dict({"embeddings_field": "emb", "k": 3, "reference": "trusted"}, **change)
        with pytest.raises(OODInputError, match=why):
            ood.compute_ood_scores(ds.limit(5), call.pop("embeddings_field"), "s", overwrite=True,
                                   progress=lambda done, total: steps.append(done), **call)
        assert max(steps, default=0) <= 1, (change, steps)  # at most the inputs were read
        _unchanged(ds, "s", before, {})
    # the same settings are not refused: the view's scores are replaced
    ood.compute_ood_scores(ds.limit(5), "emb", "s", k=3, reference="trusted", overwrite=True, progress=False)
    assert ds.values("s")[5:] == before[5:]
