"""The CLIP negative-label layer on real images: embeddings, NegLabel, RAP, explanations, bad input.

A tiny randomly initialised open_clip model saved to a local file (conftest) runs the
product's real loading and encoding code; the scores it gives are meaningless as OOD
scores, so the tests check the plumbing exactly: what is written equals the numpy
layer's result on the same embeddings, and what is recorded is complete.
"""

import numpy as np
import pytest

import ood_core as ood
from ood_core.clip.encoder import CLIPEncoder
from ood_core.clip.lexicon import read_word_list
from ood_core.clip.neglabel import NegLabelScorer, neglabel_scores, predict_id_class
from ood_core.clip.rap import RAPScorer
from ood_core.errors import OODInputError, ResourceNotFoundError, WeightsNotFoundError
from ood_core.fo import runs as fo_runs

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
NOUNS = (
    "dog cat horse cow sheep bird fish whale shark frog snake lizard tiger lion bear wolf fox rabbit "
    "car truck bus train bicycle airplane boat ship rocket tractor road bridge tower castle church house "
    "mountain river lake ocean beach desert forest jungle volcano island cloud rain snow storm lightning "
    "apple banana orange pizza bread cheese cake soup rice salad coffee wine beer tea sugar salt pepper "
    "guitar piano violin drum trumpet computer phone television camera clock lamp chair table sofa bed"
).split()
ADJECTIVES = "red green blue yellow purple happy sad angry wooden metallic furry liquid frozen rusty ancient".split()
# ID class names hidden in the vocabulary: they must never become negative labels.
ID_WORDS = ["dress", "Coat", "sneaker", "ankle_boot"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def word_list(tmp_path_factory):
    path = tmp_path_factory.mktemp("words") / "words.txt"
    lines = NOUNS + ID_WORDS + [f"{a}\tadj" for a in ADJECTIVES]
    path.write_text("# small test vocabulary\n" + "\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private text-embedding cache, shared by this module's tests (speed)."""
    return str(tmp_path_factory.mktemp("clip_cache"))


@pytest.fixture
def ds(dataset_factory, fashion_files):
    """30 real Fashion-MNIST images, 3 per class, labelled."""
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(10) for j in range(3)]
    return dataset_factory([paths[i] for i in idx], [names[i] for i in idx])


@pytest.fixture
def embedded(ds, tiny_clip):
    ood.compute_clip_embeddings(
        ds, "clip", model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors), progress=False
    )
    return ds


def _model(tiny_clip):
    return dict(model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors))


def _neglabel(ds, cache, word_list, **kw):
    kw.setdefault("label_field", "ground_truth")
    kw.setdefault("word_list", word_list)
    kw.setdefault("num_negatives", 20)
    kw.setdefault("num_groups", 4)
    return ood.compute_neglabel_scores(ds, cache_dir=cache, progress=False, **kw)


def _texts(enc, words, pos, noun="the nice {}", adj="This is a {} photo"):
    return enc.encode_texts([(noun if p == "noun" else adj).format(w) for w, p in zip(words, pos)])


# --------------------------------------------------------------------------- embeddings


def test_clip_embeddings_field_and_encoder_record(ds, tiny_clip):
    seen = []
    summary = ood.compute_clip_embeddings(
        ds, "clip", **_model(tiny_clip), batch_size=8, progress=lambda d, t: seen.append((d, t))
    )
    assert summary["num_embedded"] == 30 and summary["dim"] == 32 and summary["num_failed"] == 0
    assert seen[-1] == (30, 30) and len(seen) == 4
    vecs = np.stack(ds.values("clip"))
    enc = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    np.testing.assert_allclose(vecs, enc.encode_images(ds.values("filepath")), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    info = fo_runs.get_ood_run_info(ds, "clip")
    assert info["kind"] == "embeddings" and info["fields"] == ["clip"]
    assert info["backbone"] == {
        "kind": "clip", "model_name": tiny_clip.name, "pretrained": str(tiny_clip.safetensors),
        "quick_gelu": False, "weights_identity": enc.weights_identity, "embed_dim": 32,
    }
    with pytest.raises(OODInputError, match="'clip' already exists"):
        ood.compute_clip_embeddings(ds, "clip", **_model(tiny_clip), progress=False)
    # overwriting a view keeps the other samples' vectors: only with the same encoder
    before = ds.values("clip")
    ood.compute_clip_embeddings(ds.limit(5), "clip", **_model(tiny_clip), overwrite=True, progress=False)
    np.testing.assert_allclose(np.stack(ds.values("clip")), np.stack(before), atol=1e-5)
    with pytest.raises(OODInputError, match="come from another encoder"):
        ood.compute_clip_embeddings(ds.limit(5), "clip", **_model(tiny_clip), quick_gelu=True, overwrite=True,
                                    progress=False)


# --------------------------------------------------------------------------- NegLabel


def test_neglabel_scores_equal_the_numpy_layer_and_are_recorded(embedded, tiny_clip, word_list, cache):
    ds = embedded
    summary = _neglabel(ds, cache, word_list, score_field="nl", embeddings_field="clip", remove_id_names=True)
    assert summary["num_scored"] == 30 and summary["num_negatives"] == 20
    assert summary["id_labels"] == sorted(CLASSES)

    # Independent recomputation with the numpy layer on the same image embeddings.
    enc = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    lex = read_word_list(word_list)
    names = sorted(CLASSES)
    ref = NegLabelScorer(num_negatives=20, num_groups=4, remove_id_names=True).fit_embeddings(
        names, enc.encode_texts([f"the nice {n}" for n in names]), lex.words, lex.pos,
        _texts(enc, lex.words, lex.pos),
    )
    X = np.stack(ds.values("clip"))
    np.testing.assert_allclose(ds.values("nl"), ref.score_samples(X), rtol=1e-5, atol=1e-7)
    labels, conf = ref.predict(X)
    preds = ds.values("neglabel_prediction")
    assert [p.label for p in preds] == labels
    np.testing.assert_allclose([p.confidence for p in preds], conf, rtol=1e-5)
    assert all(0.0 <= s <= 1.0 for s in ds.values("nl"))

    info = fo_runs.get_ood_run_info(ds, "nl")
    assert info["kind"] == "neglabel" and info["fields"] == ["nl", "neglabel_prediction"]
    assert info["clip"]["weights_identity"] == enc.weights_identity
    assert info["label_field"] == "ground_truth" and info["embeddings_field"] == "clip"
    assert info["neglabel"]["num_negatives"] == 20 and info["neglabel"]["tau"] == 0.01
    assert info["lexicon"]["num_words"] == len(lex) and info["lexicon"]["source"].startswith("word_list:")
    res = fo_runs.load_ood_results(ds, "nl")
    assert res.negative_words == ref.negative_words_ and res.negative_pos == ref.negative_pos_
    assert sorted(res.excluded_words) == sorted(["dress", "Coat", "sneaker", "ankle boot"])
    assert not {w.lower() for w in res.negative_words} & {"dress", "coat", "sneaker", "ankle boot"}
    assert res.id_names == names and len(res.negative_similarity) == 20
    assert ds._dataset.get_field("neglabel_prediction").document_type.__name__ == "Classification"


def test_neglabel_encodes_the_images_itself_without_embeddings_field(embedded, tiny_clip, word_list, cache):
    ds = embedded
    _neglabel(ds, cache, word_list, score_field="stored", embeddings_field="clip", prediction_field=None)
    names = ["Trouser", "Bag", "Sandal"]
    summary = _neglabel(ds, cache, word_list, score_field="fresh", label_field=None, id_labels=names,
                        prediction_field="pred", batch_size=7, **_model(tiny_clip))
    assert summary["id_labels"] == names and not ds.has_field("neglabel_prediction")
    # Same encoder, same images: the scores equal a numpy computation on the stored embeddings.
    enc = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    lex = read_word_list(word_list)
    ref = NegLabelScorer(num_negatives=20, num_groups=4).fit_embeddings(
        names, enc.encode_texts([f"the nice {n}" for n in names]), lex.words, lex.pos,
        _texts(enc, lex.words, lex.pos),
    )
    X = np.stack(ds.values("clip"))
    np.testing.assert_allclose(ds.values("fresh"), ref.score_samples(X), rtol=1e-4, atol=1e-6)
    assert {p.label for p in ds.values("pred")} <= set(names)
    assert fo_runs.get_ood_run_info(ds, "fresh")["embeddings_field"] is None


def test_overwrite_is_refused_then_replaces_cleanly(embedded, word_list, cache):
    ds = embedded
    ds.set_values("mine", [1.0] * len(ds))
    with pytest.raises(OODInputError, match="'mine' exists.*no fiftyone-ood run wrote it"):
        _neglabel(ds, cache, word_list, score_field="mine", embeddings_field="clip")
    assert ds.values("mine") == [1.0] * len(ds) and not ds.has_field("neglabel_prediction")
    _neglabel(ds, cache, word_list, score_field="nl", embeddings_field="clip")
    with pytest.raises(OODInputError, match="already exists"):
        _neglabel(ds, cache, word_list, score_field="nl", embeddings_field="clip")
    first = ds.values("nl")
    _neglabel(ds, cache, word_list, score_field="nl", embeddings_field="clip", num_negatives=40, overwrite=True)
    assert ds.values("nl") != first
    assert fo_runs.get_ood_run_info(ds, "nl")["neglabel"]["num_negatives"] == 40
    assert len(fo_runs.load_ood_results(ds, "nl").negative_words) == 40


def test_failures_leave_no_fields_and_keep_old_values(embedded, word_list, cache, monkeypatch):
    ds = embedded
    before = set(ds.get_field_schema())

    def broken_register(*a, **k):
        raise RuntimeError("database went away")

    with monkeypatch.context() as m:
        m.setattr(fo_runs, "register_run", broken_register)
        with pytest.raises(RuntimeError, match="went away"):
            _neglabel(ds, cache, word_list, score_field="half", embeddings_field="clip")
    assert set(ds.get_field_schema()) == before and "half" not in ds.list_runs()

    _neglabel(ds, cache, word_list, score_field="nl", embeddings_field="clip")
    old, old_pred = ds.values("nl"), ds.values("neglabel_prediction.label")

    def exploding(*a, **k):
        raise MemoryError("boom")

    monkeypatch.setattr(NegLabelScorer, "score_samples", exploding)
    with pytest.raises(MemoryError):
        _neglabel(ds, cache, word_list, score_field="nl", embeddings_field="clip", num_negatives=40,
                  overwrite=True)
    assert ds.values("nl") == old and ds.values("neglabel_prediction.label") == old_pred
    assert fo_runs.get_ood_run_info(ds, "nl")["neglabel"]["num_negatives"] == 20


# --------------------------------------------------------------------------- RAP


def test_rap_matches_numpy_layer_and_records_train_and_test_negatives(embedded, tiny_clip, word_list, cache):
    ds = embedded
    common = dict(label_field="ground_truth", embeddings_field="clip", word_list=word_list, k_per_class=1,
                  num_crops=6, num_keep=2, num_negatives=10, num_groups=2, words_per_sample=1, u1=0.0,
                  u2=1.0, update_batch_size=8, seed=3, cache_dir=cache, progress=False)
    summary = ood.compute_rap_scores(ds, "rap", **common)
    # u1=0, u2=1: every sample is "valuable" and unites its nearest word with the negatives.
    assert summary["num_few_shot"] == 10 and summary["num_train_negatives"] == 10
    assert 0 < summary["num_test_negatives"] <= 30
    res = fo_runs.load_ood_results(ds, "rap")
    ids = sorted(ds.values("id"))
    assert res.processed_ids == ids and res.processing_order == "sample id ascending"
    sources = res.test_negative_sample_ids
    assert sources == sorted(sources) and set(sources) <= set(ids)  # added in processing order
    assert not set(res.train_negative_words) & set(res.test_negative_words)
    few = res.few_shot_ids
    few_labels = [ds[i].ground_truth.label for i in few]
    assert sorted(few_labels) == sorted(CLASSES) and few == sorted(few)

    # The numpy layer on the same few-shot images and embeddings gives the same result.
    enc = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    lex = read_word_list(word_list)
    ref = RAPScorer(num_crops=6, num_keep=2, num_negatives=10, num_groups=2, words_per_sample=1, u1=0.0,
                    u2=1.0, batch_size=8, seed=3)
    ref.fit(sorted(CLASSES), [ds[i].filepath for i in few], enc, lex, few_shot_labels=few_labels, cache_dir=cache)
    id_of = dict(zip(ds.values("id"), ds.values("clip")))
    X = np.stack([id_of[i] for i in ids])
    expected = ref.score_samples(X)
    record = ref.run_record(expected)
    assert res.train_negative_words == record["train_negative_words"]
    assert res.test_negative_words == record["test_negative_words"]
    score_of = dict(zip(ds.values("id"), ds.values("rap")))
    np.testing.assert_allclose([score_of[i] for i in ids], expected.ood_scores, rtol=1e-5, atol=1e-7)
    cls, conf = predict_id_class(X, ref.id_emb_)
    pred_of = dict(zip(ds.values("id"), ds.values("rap_prediction")))
    assert [pred_of[i].label for i in ids] == [sorted(CLASSES)[c] for c in cls]
    np.testing.assert_allclose([pred_of[i].confidence for i in ids], conf, rtol=1e-5)

    info = fo_runs.get_ood_run_info(ds, "rap")
    assert info["kind"] == "rap" and info["fields"] == ["rap", "rap_prediction"] and info["test_time"] is True
    assert info["few_shot"]["k_per_class"] == 1 and info["rap"]["num_crops"] == 6
    assert {k: info["rap"][k] for k in ("crop_ranking", "flip", "retrieval", "rescore", "u_preset")} == {
        "crop_ranking": "own_class", "flip": True, "retrieval": "union", "rescore": "online",
        "u_preset": "imagenet10_vs_20"}
    assert res.thresholds == [0.0, 1.0]
    assert info["processing_order"] == "sample id ascending"

    # Paper ablation: train-time negatives only = grouped NegLabel score with them.
    ood.compute_rap_scores(ds, "rap_train", **dict(common, test_time=False), prediction_field=None)
    res0 = fo_runs.load_ood_results(ds, "rap_train")
    assert res0.test_negative_words == [] and res0.train_negative_words == res.train_negative_words
    cand = ref.candidate_emb_[ref.train_negatives_]
    _, ood_train = neglabel_scores(X, ref.id_emb_, cand, num_groups=2, seed=3)
    score0 = dict(zip(ds.values("id"), ds.values("rap_train")))
    np.testing.assert_allclose([score0[i] for i in ids], ood_train, rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore:only one in-distribution class")
def test_rap_few_shot_tag_and_its_errors(ds, tiny_clip, word_list, cache):
    kw = dict(word_list=word_list, num_crops=4, num_keep=2, num_negatives=10, num_groups=2, cache_dir=cache,
              progress=False, **_model(tiny_clip))
    with pytest.raises(OODInputError, match="few-shot in-distribution set"):
        ood.compute_rap_scores(ds, "r", label_field="ground_truth", **kw)
    with pytest.raises(OODInputError, match="matches no samples"):
        ood.compute_rap_scores(ds, "r", label_field="ground_truth", few_shot="nope", **kw)
    ds.filter_labels("ground_truth", _label_is("Bag")).tag_samples("fewshot")
    # A few-shot sample labelled with a class that is not in id_labels is refused.
    with pytest.raises(OODInputError, match="not ID classes"):
        ood.compute_rap_scores(ds, "r", id_labels=["Trouser"], label_field="ground_truth",
                                   few_shot="fewshot", **kw)
    with pytest.raises(OODInputError, match="needs label_field"):
        ood.compute_rap_scores(ds, "r", id_labels=["Bag"], k_per_class=1, **kw)
    # Crops are ranked by each image's own class: without a label field there is none.
    with pytest.raises(OODInputError, match="crop_ranking='all_prompts'"):
        ood.compute_rap_scores(ds, "r", id_labels=["Bag", "Dress"], few_shot="fewshot", **kw)
    ds.reload()
    assert not ds.has_field("r") and "r" not in ds.list_runs()
    kw["crop_ranking"] = "all_prompts"
    summary = ood.compute_rap_scores(ds.match_tags("fewshot", bool=False), "r", id_labels=["Bag", "Dress"],
                                         few_shot="fewshot", test_time=False, **kw)
    assert summary["num_few_shot"] == 3 and summary["num_scored"] == 27
    assert fo_runs.get_ood_run_info(ds, "r")["few_shot"] == {"tag": "fewshot"}
    assert ds.match_tags("fewshot").values("r") == [None] * 3  # only the view was scored
    # a few-shot *view* is recorded so that the run reloads and the view can be rebuilt
    few_view = ds.match_tags("fewshot").limit(2)
    ood.compute_rap_scores(ds.match_tags("fewshot", bool=False), "r2", id_labels=["Bag", "Dress"],
                               few_shot=few_view, test_time=False, prediction_field="rap2_prediction", **kw)
    recorded = fo_runs.get_ood_run_info(ds, "r2")["few_shot"]
    assert fo_runs.view_from_description(ds, recorded).values("id") == few_view.values("id")
    # an unreadable few-shot image is left out and listed (the default), or stops the run with skip_failures=False
    broken = ds.match_tags("fewshot").first()
    broken.filepath = "/nonexistent/few_shot.png"
    broken.save()
    with pytest.raises(OODInputError, match="does not exist"):
        ood.compute_rap_scores(ds.match_tags("fewshot", bool=False), "r3", id_labels=["Bag", "Dress"],
                               few_shot="fewshot", test_time=False, prediction_field=None, skip_failures=False, **kw)
    summary = ood.compute_rap_scores(ds.match_tags("fewshot", bool=False), "r3", id_labels=["Bag", "Dress"],
                                     few_shot="fewshot", test_time=False, prediction_field=None, **kw)
    assert summary["num_few_shot"] == 2
    failures = fo_runs.load_ood_results(ds, "r3").few_shot_failures
    assert [f["id"] for f in failures] == [broken.id] and "does not exist" in failures[0]["error"]


def _label_is(label):
    from fiftyone import ViewField as F

    return F("label") == label


# --------------------------------------------------------------------------- explanations


def test_explain_sample_uses_the_run_record(embedded, tiny_clip, word_list, cache):
    ds = embedded
    _neglabel(ds, cache, word_list, score_field="nl", embeddings_field="clip")
    sample = ds.first()
    out = ood.explain_sample(ds, "nl", sample.id, top=3, cache_dir=cache)
    assert out["kind"] == "neglabel" and out["score"] == sample["nl"]
    assert out["prediction"]["label"] == sample["neglabel_prediction"].label
    assert len(out["id_labels"]) == 3 and len(out["negative_labels"]) == 3
    # Similarities equal the direct cosines with the recorded labels' prompts.
    enc = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    x = np.asarray(sample["clip"])
    names = sorted(CLASSES)
    id_sims = enc.encode_texts([f"the nice {n}" for n in names]) @ x
    best = np.argsort(-id_sims, kind="stable")[:3]
    assert [e["label"] for e in out["id_labels"]] == [names[i] for i in best]
    np.testing.assert_allclose([e["similarity"] for e in out["id_labels"]], id_sims[best], atol=1e-5)
    res = fo_runs.load_ood_results(ds, "nl")
    neg_sims = _texts(enc, res.negative_words, res.negative_pos) @ x
    best = np.argsort(-neg_sims, kind="stable")[:3]
    assert [e["label"] for e in out["negative_labels"]] == [res.negative_words[i] for i in best]
    assert all(e["stage"] == "mined" for e in out["negative_labels"])
    assert out["negative_labels"][0]["similarity"] >= out["negative_labels"][-1]["similarity"]

    # RAP: negatives say whether they were mined at train time or added at test time (and by whom).
    ood.compute_rap_scores(ds, "rap", label_field="ground_truth", embeddings_field="clip",
                               word_list=word_list, k_per_class=1, num_crops=4, num_keep=2, num_negatives=5,
                               num_groups=1, words_per_sample=3, u1=0.0, u2=1.0, cache_dir=cache, progress=False)
    res = fo_runs.load_ood_results(ds, "rap")
    source = res.test_negative_sample_ids[0]
    out = ood.explain_sample(ds, "rap", source, top=100, cache_dir=cache)
    assert len(out["negative_labels"]) == len(res.train_negative_words) + len(res.test_negative_words)
    stages = {e["label"]: e for e in out["negative_labels"]}
    assert all(stages[w]["stage"] == "train" for w in res.train_negative_words)
    added = [w for w, s in zip(res.test_negative_words, res.test_negative_sample_ids) if s == source]
    assert added and all(stages[w]["stage"] == "test" and stages[w]["added_by"] == source for w in added)

    with pytest.raises(OODInputError, match="explains NegLabel, RAP or AdaNeg runs"):
        ood.explain_sample(ds, "clip", sample.id)
    with pytest.raises(OODInputError, match="not a sample"):
        ood.explain_sample(ds, "nl", "0123456789abcdef01234567")
    with pytest.raises(OODInputError, match="no fiftyone-ood run"):
        ood.explain_sample(ds, "nope", sample.id)
    with pytest.raises(OODInputError, match="sample_id must be a sample's id"):
        ood.explain_sample(ds, "nl", sample)
    with pytest.raises(OODInputError, match="top=2.7 is a float"):
        ood.explain_sample(ds, "nl", sample.id, top=2.7)
    sample["nl"] = None  # as for a sample outside the run's view, or whose image could not be read
    sample.save()
    with pytest.raises(OODInputError, match="has no score in run 'nl'"):
        ood.explain_sample(ds, "nl", sample.id)


# --------------------------------------------------------------------------- bad input


def test_bad_label_inputs_are_named(embedded, word_list, cache, tmp_path):
    ds = embedded
    kw = dict(score_field="x", embeddings_field="clip", label_field=None)
    with pytest.raises(OODInputError, match="id_labels is empty"):
        _neglabel(ds, cache, word_list, id_labels=[], **kw)
    with pytest.raises(OODInputError, match="either as id_labels"):
        _neglabel(ds, cache, word_list, **kw)
    with pytest.raises(OODInputError, match="not both"):
        _neglabel(ds, cache, word_list, **dict(kw, label_field="ground_truth"), id_labels=["Bag"])
    with pytest.raises(OODInputError, match="not the string"):
        _neglabel(ds, cache, word_list, id_labels="Bag, Coat", **kw)
    with pytest.raises(OODInputError, match="duplicates"):
        _neglabel(ds, cache, word_list, id_labels=["Bag", "bag"], **kw)
    # types that were used silently (a dict's keys) or failed deep inside
    with pytest.raises(OODInputError, match="id_labels must be a list of class names; got a dict"):
        _neglabel(ds, cache, word_list, id_labels={"Bag": 1}, **kw)
    with pytest.raises(OODInputError, match="word_list must be the path of a text file"):
        _neglabel(ds, cache, 5, id_labels=["Bag", "Coat"], **kw)
    with pytest.raises(OODInputError, match="is a folder"):
        _neglabel(ds, cache, str(tmp_path), id_labels=["Bag", "Coat"], **kw)
    with pytest.raises(OODInputError, match="quick_gelu='yes' is not valid"):
        _neglabel(ds, cache, word_list, id_labels=["Bag", "Coat"], quick_gelu="yes", **kw)
    with pytest.raises(OODInputError, match="device='gpu9' is not a torch device"):
        _neglabel(ds, cache, word_list, id_labels=["Bag", "Coat"], device="gpu9", **kw)
    with pytest.raises(OODInputError, match="test_time='no' is not valid"):
        ood.compute_rap_scores(ds, "r", id_labels=["Bag"], label_field="ground_truth", k_per_class=1,
                               test_time="no", word_list=word_list, cache_dir=cache, progress=False)
    with pytest.raises(OODInputError, match="label field 'nope' does not exist"):
        _neglabel(ds, cache, word_list, **dict(kw, label_field="nope"))
    import fiftyone as fo

    ds.add_sample_field("empty_labels", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    with pytest.raises(OODInputError, match="holds no labels"):
        _neglabel(ds, cache, word_list, **dict(kw, label_field="empty_labels"))
    # A vocabulary made only of ID class names leaves nothing to mine.
    only_ids = tmp_path / "ids.txt"
    only_ids.write_text("dress\ncoat\n")
    with pytest.raises(OODInputError, match="empty once the ID class names are removed"):
        _neglabel(ds, cache, str(only_ids), id_labels=["Dress", "Coat"], remove_id_names=True, **kw)
    with pytest.raises(OODInputError, match=r"num_groups=100 is larger .* \(20: num_negatives=20"):
        _neglabel(ds, cache, word_list, id_labels=["Bag", "Coat"], num_groups=100, **kw)
    with pytest.raises(OODInputError, match="tau must be a positive number"):
        _neglabel(ds, cache, word_list, id_labels=["Bag", "Coat"], tau=0.0, **kw)
    # One ID class: the numpy layer allows it (S is defined for K = 1); the user is told.
    with pytest.warns(UserWarning, match="only one in-distribution class"):
        _neglabel(ds, cache, word_list, id_labels=["Bag"], **kw)
    preds = ds.values("neglabel_prediction")
    assert {p.label for p in preds} == {"Bag"} and np.allclose([p.confidence for p in preds], 1.0)


def test_encoder_mismatches_and_missing_resources(embedded, tiny_clip, tiny_clip_factory, word_list, cache,
                                                  tmp_path, monkeypatch):
    ds = embedded
    kw = dict(score_field="x", label_field="ground_truth")
    other = tiny_clip_factory(seed=1)  # same architecture, other weights
    with pytest.raises(OODInputError, match="only comparable within one CLIP model"):
        _neglabel(ds, cache, word_list, embeddings_field="clip", model_name=other.name,
                  pretrained=str(other.safetensors), **kw)
    small = tiny_clip_factory(name="ood-test-tiny-clip-16", embed_dim=16)
    ood.compute_clip_embeddings(ds, "clip16", model_name=small.name, pretrained=str(small.safetensors),
                                    progress=False)
    with pytest.raises(OODInputError, match="dimension 16 but the text embeddings .* dimension 32"):
        _neglabel(ds, cache, word_list, embeddings_field="clip16", **_model(tiny_clip), **kw)
    ds.set_values("mystery", ds.values("clip"))
    with pytest.raises(OODInputError, match="no fiftyone-ood embeddings run"):
        _neglabel(ds, cache, word_list, embeddings_field="mystery", **kw)
    with pytest.raises(OODInputError, match="does not exist"):
        _neglabel(ds, cache, word_list, embeddings_field="nope", **kw)
    # No WordNet anywhere (and no word_list).
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ResourceNotFoundError, match="wordnet-base"):
        _neglabel(ds, cache, None, embeddings_field="clip", wordnet_dir=str(empty), **kw)
    # No weights: a missing file, and the 'openai' tag offline with an empty hub cache.
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        _neglabel(ds, cache, word_list, model_name=tiny_clip.name, pretrained=str(tmp_path / "w.safetensors"), **kw)
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError, match="pretrained=\"/path/to/weights.safetensors\""):
        _neglabel(ds, cache, word_list, **kw)  # default: ViT-B-16 + 'openai'
    with pytest.raises(WeightsNotFoundError):
        ood.compute_clip_embeddings(ds, "clip_openai", progress=False)
    ds.reload()
    assert not ds.has_field("x") and "x" not in ds.list_runs() and not ds.has_field("clip_openai")


def test_real_debian_wordnet_vocabulary(embedded, tiny_clip, cache):
    """NegLabel's own vocabulary (WordNet adjectives here, to keep the tiny model's encoding short)."""
    ds = embedded
    summary = ood.compute_neglabel_scores(
        ds, "nl", label_field="ground_truth", embeddings_field="clip", wordnet_dir="/usr/share/wordnet",
        parts_of_speech=("adj",), num_groups=10, cache_dir=cache, progress=False,
    )
    info = fo_runs.get_ood_run_info(ds, "nl")
    lexicon = info["lexicon"]
    assert lexicon["source"].startswith("wordnet:") and lexicon["num_nouns"] == 0
    # "paper" vocabulary: words that are also (kept) nouns stay nouns only.
    assert lexicon["vocabulary"] == "paper" and lexicon["num_adjectives"] == 20713
    res = fo_runs.load_ood_results(ds, "nl")
    # Default mining: the least ID-like 15% of the adjectives (3,106); the official code
    # drops the 3,106 mod 10 = 6 most ID-like of them so the 10 groups are equal.
    assert res.num_mined == 3106 and summary["num_negatives"] == 3100 and len(res.dropped_words) == 6
    assert info["protocol"] == {"name": "paper", "vocabulary": "paper", "id_names_in_candidates": "kept",
                                "remainder": "last", "num_mined": 3106, "num_negatives": 3100}
    assert set(res.negative_pos) == {"adj"} and res.excluded_words == []
    assert len(set(res.negative_words)) == len(res.negative_words)


def test_clip_embeddings_skip_decompression_bombs(dataset_factory, fashion_files, tiny_clip, tmp_path, monkeypatch):
    from PIL import Image

    from ood_core.images import ImageLoadError

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Fashion-MNIST's 28x28 stays below
    bomb = str(tmp_path / "bomb.png")
    Image.new("RGB", (50, 50)).save(bomb)  # 2,500 px > 2 x 1000: PIL refuses to decode
    paths, _ = fashion_files
    ds = dataset_factory([paths[0], bomb, paths[1]])
    with pytest.raises(ImageLoadError, match=r"bomb\.png"):
        ood.compute_clip_embeddings(ds, "clip", **_model(tiny_clip), skip_failures=False, progress=False)
    summary = ood.compute_clip_embeddings(ds, "clip", **_model(tiny_clip), progress=False)  # skipped by default
    assert summary["num_embedded"] == 2 and summary["num_failed"] == 1
    assert ds.count("clip") == 2
    # a view with no readable image is refused with the reason, and nothing is written
    with pytest.raises(OODInputError, match=r"none of the 1 images of the view could be read.*bomb\.png"):
        ood.compute_clip_embeddings(ds.select(ds.values("id")[1]), "clip_bomb", **_model(tiny_clip), progress=False)
    assert not ds.has_sample_field("clip_bomb") and "clip_bomb" not in ood.list_ood_runs(ds)


def test_negative_counts_are_refused_before_the_model_loads(embedded, tiny_clip, word_list, cache, tmp_path):
    """NegLabel mines at most every candidate word: a larger num_negatives is refused from the vocabulary alone,
    before the model's weights are read (here a missing weights file is never reached); RAP caps it at the
    vocabulary, so its call goes on to the weights."""
    missing = dict(model_name=tiny_clip.name, pretrained=str(tmp_path / "missing.safetensors"))
    kw = dict(score_field="x", label_field=None, id_labels=["Bag", "Coat"], **missing)
    candidates = len(read_word_list(word_list))
    with pytest.raises(OODInputError, match=rf"num_negatives=500 is larger than the {candidates} candidate words"):
        _neglabel(embedded, cache, word_list, num_negatives=500, **kw)
    with pytest.raises(OODInputError, match=r"num_negatives=500 is larger than the \d+ candidate words of the "
                                            r"vocabulary \(ID class names removed\)"):
        _neglabel(embedded, cache, word_list, num_negatives=500, remove_id_names=True, **kw)
    with pytest.raises(WeightsNotFoundError):
        _neglabel(embedded, cache, word_list, num_negatives=10, **kw)  # within the vocabulary: the weights
    with pytest.raises(WeightsNotFoundError):
        ood.compute_rap_scores(embedded, "r", label_field="ground_truth", k_per_class=1, num_negatives=500, num_groups=4,
                               word_list=word_list, cache_dir=cache, progress=False, **missing)
    assert not embedded.has_field("x") and not embedded.has_field("r")
