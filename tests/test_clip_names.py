"""The CLIP scorers given the class names and word lists real datasets have: multi-word, slash-separated,
plural, upper case, digits, unicode, one class or hundreds, classes without a few-shot image.

Each test of a fix failed before it:

- an ID class name in the plural ("Dogs", "Ankle boots") or with alternatives ("T-shirt/top", Fashion-MNIST's own
  class) was not matched to the vocabulary's "dog", "ankle boot", "t-shirt", "top": those words became negative
  labels of their own class (NegLabel / AdaNeg with ``remove_id_names=True``, and always RAP), and a vocabulary of
  nothing but such words was accepted;
- with the official default ``remove_id_names=False`` an ID class name stays in the candidate pool, and nothing
  kept it from being mined as a negative label of its own class;
- a word list line "horse  # animal" became the candidate word "horse  # animal";
- RAP ran silently with an ID class that had no few-shot image (its crops never ranked, its prompt never
  checked), while a class with fewer than ``k_per_class`` images was warned about;
- an ID class name given as a number (``id_labels=[3, 7]``) or twice up to case ("Cat", "cat ") was refused
  without saying how to write it or which name it repeats.
"""

import warnings

import numpy as np
import pytest
from fiftyone import ViewField as F

import ood_core as ood
from ood_core.clip.lexicon import normalize_word, read_word_list
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs
from clip_helpers import WORDS, small_clip_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: words of the vocabulary that name an ID class of :data:`ID_NAMES` (singular, or one of its alternatives)
ID_FORMS = ["t-shirt", "top", "ankle boot", "bus", "glass"]
#: ID class names as datasets write them: alternatives, plurals, upper case
ID_NAMES = ["T-shirt/top", "Dogs", "Ankle boots", "BUSES", "glasses", "Cat"]
#: words near an ID name that name another thing: they stay candidates
NEIGHBOURS = ["boot", "shirt"]


@pytest.fixture
def setup(dataset_factory, fashion_files, tiny_clip, tmp_path):
    """20 labelled Fashion-MNIST images, the tiny CLIP model, a private text cache, no prediction field."""
    return small_clip_run(dataset_factory, fashion_files, tiny_clip, tmp_path, prediction_field=None)


def _names_list(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(WORDS + ID_FORMS + NEIGHBOURS) + "\n")
    return str(path)


def _missing_weights(kw, tmp_path):
    """Settings with a weights file that does not exist: an OODInputError proves the refusal came first."""
    return dict(kw, pretrained=str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize("method", ["neglabel", "adaneg"])
def test_plural_and_slash_id_class_names_are_never_negative_labels(setup, tmp_path, method):
    ds, kw = setup
    # fraction=1 with one group mines every remaining candidate: any ID form left in the pool becomes a negative
    getattr(ood, f"compute_{method}_scores")(
        ds, "score", id_labels=ID_NAMES, remove_id_names=True, fraction=1.0, num_groups=1,
        **dict(kw, word_list=_names_list(tmp_path)))
    res = fo_runs.load_ood_results(ds, "score")
    negatives = {normalize_word(w) for w in res.negative_words}
    assert sorted(normalize_word(w) for w in res.excluded_words) == sorted(ID_FORMS + ["dog", "cat"])
    assert not negatives & set(ID_FORMS + ["dog", "cat"])
    assert set(NEIGHBOURS) <= negatives  # "boot" is not "ankle boot", "shirt" is not "t-shirt"
    assert len(negatives) == len(WORDS) + len(ID_FORMS) + len(NEIGHBOURS) - len(res.excluded_words)


@pytest.mark.parametrize("method", ["neglabel", "adaneg"])
def test_id_class_names_kept_among_the_candidates_are_never_picked_as_negatives(setup, tmp_path, method):
    """The official default keeps ID class names in the candidate pool (it sets the count M); with many classes
    the 95th percentile of a name's similarities ignores its own class, so it could be mined as a negative."""
    ds, kw = setup
    words = _names_list(tmp_path)
    getattr(ood, f"compute_{method}_scores")(ds, "all", id_labels=ID_NAMES, fraction=1.0, num_groups=1,
                                             **dict(kw, word_list=words))
    res = fo_runs.load_ood_results(ds, "all")
    negatives = {normalize_word(w) for w in res.negative_words}
    assert not negatives & set(ID_FORMS + ["dog", "cat"]) and res.excluded_words == []
    assert sorted(normalize_word(w) for w in res.id_name_candidates) == sorted(ID_FORMS + ["dog", "cat"])
    # the paper's count: 15% of the whole pool, ID names included; another word takes a skipped name's place
    num_words = len(read_word_list(words))
    getattr(ood, f"compute_{method}_scores")(ds, "part", id_labels=ID_NAMES, num_groups=1,
                                             **dict(kw, word_list=words))
    part = fo_runs.load_ood_results(ds, "part").negative_words
    assert len(part) == int(0.15 * num_words) and not {normalize_word(w) for w in part} & set(ID_FORMS)


def test_num_negatives_beyond_the_words_naming_no_id_class_is_refused_before_the_model_loads(setup, tmp_path):
    ds, kw = setup
    words = _names_list(tmp_path)
    pool = len(read_word_list(words))  # ID class names kept in the pool (the official default), never mined
    fields = set(ds.get_field_schema())
    with pytest.raises(OODInputError, match=rf"num_negatives={pool} is larger than the {pool - 7} candidate words "
                                            r"that name no ID class \(7 of the \d+ name one"):
        ood.compute_neglabel_scores(ds, "nl", id_labels=ID_NAMES, num_negatives=pool, num_groups=1,
                                    **dict(_missing_weights(kw, tmp_path), word_list=words))
    ds.reload()
    assert set(ds.get_field_schema()) == fields and ood.list_ood_runs(ds) == []


def test_rap_never_takes_a_plural_or_slash_id_class_name_as_a_negative(setup, tmp_path):
    ds, kw = setup
    ood.compute_rap_scores(ds, "rap", id_labels=ID_NAMES, few_shot=ds.limit(2), crop_ranking="all_prompts",
                           num_crops=4, num_keep=2, num_groups=2, **dict(kw, word_list=_names_list(tmp_path)))
    res = fo_runs.load_ood_results(ds, "rap")
    used = {normalize_word(w) for w in list(res.train_negative_words) + list(res.test_negative_words)}
    assert not used & set(ID_FORMS + ["dog", "cat"])
    assert sorted(normalize_word(w) for w in res.excluded_words) == sorted(ID_FORMS + ["dog", "cat"])
    assert set(NEIGHBOURS) <= used  # the default 10,000 negatives take every remaining word


@pytest.mark.parametrize("method", ["neglabel", "rap"])
def test_a_vocabulary_of_only_id_class_forms_is_refused_before_the_model_loads(setup, tmp_path, method):
    ds, kw = setup
    words = tmp_path / "only_ids.txt"
    words.write_text("dog\ntop\nt-shirt\n")
    extra = dict(few_shot=ds.limit(2), crop_ranking="all_prompts") if method == "rap" else \
        dict(remove_id_names=True)
    fields = set(ds.get_field_schema())
    with pytest.raises(OODInputError, match=r"empty once the ID class names are removed"):
        getattr(ood, f"compute_{method}_scores")(
            ds, "score", id_labels=["Dogs", "T-shirt/top"], num_negatives=1, num_groups=1,
            **dict(_missing_weights(kw, tmp_path), word_list=str(words), **extra))
    ds.reload()
    assert set(ds.get_field_schema()) == fields and ood.list_ood_runs(ds) == []


def test_word_list_comments_after_a_word_are_not_part_of_it(setup, tmp_path):
    ds, kw = setup
    path = tmp_path / "commented.txt"
    path.write_text("# animals\n\nhorse  # a farm animal\nhorse\nHorse\nfurry\tadj  # texture\n  \n"
                    "C#\n" + "\n".join(WORDS) + "\n")
    lex = read_word_list(path)
    assert lex.words[:3] == ["horse", "furry", "C#"] and lex.pos[:2] == ["noun", "adj"]  # "#" inside a word stays
    assert not [w for w in lex.words if " #" in w]
    ood.compute_neglabel_scores(ds, "nl", id_labels=["Horse", "Bag"], remove_id_names=True, num_negatives=10,
                                num_groups=2, **dict(kw, word_list=str(path)))
    assert fo_runs.load_ood_results(ds, "nl").excluded_words == ["horse"]


@pytest.mark.parametrize("pick", ["k_per_class", "few_shot_view"])
def test_rap_warns_about_and_records_an_id_class_without_a_few_shot_image(setup, pick):
    ds, kw = setup
    classes = ds.distinct("ground_truth.label")
    if pick == "k_per_class":
        names, few = classes + ["Hat"], dict(k_per_class=1)
        missing = ["Hat"]
    else:
        names, few = classes, dict(few_shot=ds.match(~F("ground_truth.label").is_in(["Bag", "Coat"])))
        missing = ["Bag", "Coat"]
    with pytest.warns(UserWarning, match=r"no few-shot image") as caught:
        ood.compute_rap_scores(ds, "rap", id_labels=names, label_field="ground_truth", num_crops=4, num_keep=2,
                               num_negatives=10, num_groups=2, **few, **kw)
    message = " ".join(str(w.message) for w in caught if "few-shot image" in str(w.message))
    assert all(repr(m) in message for m in missing) and "ground_truth" in message
    info = fo_runs.get_ood_run_info(ds, "rap")
    assert info["few_shot"]["classes_without_images"] == missing
    assert len(ds.exists("rap")) == len(ds)


def test_rap_with_a_few_shot_image_for_every_class_gives_no_such_warning(setup):
    ds, kw = setup
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even the "fewer than k_per_class" one: every class has 2 images
        ood.compute_rap_scores(ds, "rap", label_field="ground_truth", k_per_class=1, num_crops=4, num_keep=2,
                               num_negatives=10, num_groups=2, **kw)
    assert "classes_without_images" not in fo_runs.get_ood_run_info(ds, "rap")["few_shot"]


@pytest.mark.parametrize("names, match", [
    ([3, 7], r"got \[3, 7\].*write each as a string, e.g. id_labels=\['3', '7'\]"),
    (["Cat", "dog", "cat "], r"'cat ' repeats 'Cat'.*keep one of them"),
    (["class_3", "class 3"], r"'class 3' repeats 'class_3'"),
])
def test_unusable_id_class_names_say_how_to_write_them(setup, tmp_path, names, match):
    ds, kw = setup
    with pytest.raises(OODInputError, match=match):
        ood.compute_neglabel_scores(ds, "nl", id_labels=names, **_missing_weights(kw, tmp_path))


def test_unusual_class_names_run_and_are_predicted_as_written(setup):
    """Digits, underscores, unicode, upper case, one class, 250 classes: scored in [0, 1], predictions stored
    exactly as the names were given (not normalised)."""
    ds, kw = setup
    many = ["class_3", "7", "café", "海", "ANKLE BOOT", "T-shirt/top"] + [f"kind_{i}" for i in range(250)]
    ood.compute_neglabel_scores(ds, "nl", id_labels=many, num_negatives=10, num_groups=2,
                                **dict(kw, prediction_field="pred"))
    scores = np.asarray(ds.values("nl"))
    assert len(scores) == len(ds) and np.all((scores >= 0) & (scores <= 1))
    assert set(ds.values("pred.label")) <= set(many)
    with pytest.warns(UserWarning, match="only one in-distribution class"):
        ood.compute_adaneg_scores(ds.limit(1), "one", id_labels=["海"], num_negatives=10, num_groups=2, **kw)
    assert ds.limit(1).values("one")[0] is not None and ds.skip(1).exists("one").count() == 0
