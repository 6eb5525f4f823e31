"""The CLIP SDK called the way a careless user would: every mistake is an OODInputError naming the input, the
problem and the fix, raised before anything is written (and, where the call can tell, before the model loads).

Each test failed before its fix: a raw TypeError / AttributeError / AssertionError from deep inside, a string
taken for True, or NaN scores written.
"""

import json

import numpy as np
import pytest

import ood_core as ood
from ood_core.clip.encoder import CLIPEncoder
from ood_core.errors import OODInputError
from clip_helpers import small_clip_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(dataset_factory, fashion_files, tiny_clip, tmp_path):
    """20 labelled Fashion-MNIST images, the tiny CLIP model, a 33-word list, a private text cache."""
    return small_clip_run(dataset_factory, fashion_files, tiny_clip, tmp_path, num_negatives=10, num_groups=2)


def _missing_weights(kw, tmp_path):
    """The call's settings with a weights file that does not exist: an error other than WeightsNotFoundError
    proves the input was refused before the model loads."""
    return dict(kw, pretrained=str(tmp_path / "missing.safetensors"))


def _untouched(ds, fields_before):
    ds.reload()
    return set(ds.get_field_schema()) == fields_before and ood.list_ood_runs(ds) == []


@pytest.mark.parametrize("bad, match", [
    (dict(weight=float("inf")), r"weight=inf is not valid: it must be a finite number >= 0"),  # wrote NaN scores
    (dict(weight="1"), r"weight='1' .*number"),
    (dict(gap="0.2"), r"gap='0.2' is not valid: it must be a finite number in \[0, 0.5\); pass the number itself, "
                      r"e.g. gap=0.2"),
    (dict(sample_tau="0.1"), r"sample_tau='0.1' .*number"),
    (dict(memory_size=0), r"memory_size"),
])
def test_adaneg_settings_are_refused_before_the_model_loads(setup, tmp_path, bad, match):
    ds, kw = setup
    before = set(ds.get_field_schema())
    with pytest.raises(OODInputError, match=match):
        ood.compute_adaneg_scores(ds, "ada", label_field="ground_truth", **_missing_weights(kw, tmp_path), **bad)
    assert _untouched(ds, before)


def test_adaneg_infinite_weight_never_writes_nan_scores(setup):
    ds, kw = setup
    with pytest.raises(OODInputError, match="weight=inf"):
        ood.compute_adaneg_scores(ds, "ada", label_field="ground_truth", weight=np.inf, **kw)
    assert not ds.has_field("ada")


@pytest.mark.parametrize("call", ["embeddings", "neglabel", "adaneg", "rap"])
def test_skip_failures_must_be_true_or_false(setup, call):
    """skip_failures='no' was taken for True: unreadable images were skipped when the user asked to stop."""
    ds, kw = setup
    before = set(ds.get_field_schema())
    with pytest.raises(OODInputError, match=r"skip_failures='no' is not valid; pass True .* or False"):
        if call == "embeddings":
            ood.compute_clip_embeddings(ds, "clip", model_name=kw["model_name"], pretrained=kw["pretrained"],
                                        skip_failures="no", progress=False)
        elif call == "neglabel":
            ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth", skip_failures="no", **kw)
        elif call == "adaneg":
            ood.compute_adaneg_scores(ds, "ada", label_field="ground_truth", skip_failures="no", **kw)
        else:
            ood.compute_rap_scores(ds, "rap", label_field="ground_truth", k_per_class=1, num_crops=4, num_keep=2,
                                   skip_failures="no", **kw)
    assert _untouched(ds, before)


@pytest.mark.parametrize("bad, match", [
    (dict(remove_id_names="no"), r"remove_id_names='no' is not valid; pass True or False"),  # was taken for True
    (dict(fraction="0.5", num_negatives=None), r"fraction='0.5' .*number"),  # was parsed and recorded as a string
    (dict(percentile="95"), r"percentile='95' .*number"),  # raw TypeError
    # refused only after encoding every image
    (dict(percentile=200), r"percentile=200 is not valid: it must be a finite number >= 0 and <= 100"),
])
def test_neglabel_mining_settings_are_refused_before_the_model_loads(setup, tmp_path, bad, match):
    ds, kw = setup
    before = set(ds.get_field_schema())
    for scorer in (ood.compute_neglabel_scores, ood.compute_adaneg_scores):
        with pytest.raises(OODInputError, match=match):
            scorer(ds, "s", label_field="ground_truth", **{**_missing_weights(kw, tmp_path), **bad})
    assert _untouched(ds, before)


def test_embeddings_field_that_is_not_a_name(setup):
    ds, kw = setup
    with pytest.raises(OODInputError, match=r"embeddings_field=5 is not a field name"):
        ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth", embeddings_field=5, **kw)
    with pytest.raises(OODInputError, match=r"embeddings_field=\['clip'\] is not a field name"):
        ood.compute_rap_scores(ds, "rap", label_field="ground_truth", k_per_class=1, num_crops=4, num_keep=2,
                               embeddings_field=["clip"], **kw)
    assert not ds.has_field("nl") and not ds.has_field("rap")


@pytest.mark.parametrize("name", ["cache_dir", "wordnet_dir"])
def test_folders_that_are_not_paths_are_named(setup, tmp_path, name):
    ds, kw = setup
    args = dict(_missing_weights(kw, tmp_path), **{name: 5})
    if name == "wordnet_dir":
        args["word_list"] = None
    with pytest.raises(OODInputError, match=rf"{name}=5 is not a folder path"):
        ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth", **args)
    assert not ds.has_field("nl")


def test_explain_sample_cache_dir_and_generated_views(setup):
    import fiftyone as fo

    ds, kw = setup
    ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth", **kw)
    sample = ds.first()
    with pytest.raises(OODInputError, match=r"cache_dir=5 is not a folder path"):
        ood.explain_sample(ds, "nl", sample.id, cache_dir=5)
    ds.set_values("boxes", [fo.Detections(detections=[fo.Detection(label="Bag", bounding_box=[0.1, 0.1, 0.5, 0.5])])
                            for _ in range(len(ds))])
    # the error used to say the run did not exist, on the patches' temporary dataset
    with pytest.raises(OODInputError, match="generated view"):
        ood.explain_sample(ds.to_patches("boxes"), "nl", sample.id, cache_dir=kw["cache_dir"])


@pytest.mark.parametrize("bad, match", [
    (dict(num_negatives=None), r"num_negatives=None .*whole number"),  # raw TypeError after encoding the crops
    (dict(crop_scale=0.5), r"crop_scale=0.5 .*two numbers"),
    (dict(crop_scale="0.5"), r"crop_scale='0.5' .*two numbers"),
    (dict(lambdas=3), r"lambdas=3 must be three finite numbers"),
    (dict(eta="5"), r"eta='5' .*number"),
    (dict(seed=-1), r"seed=-1 is not valid; pass a whole number >= 0"),
    (dict(seed="x"), r"seed='x' is not valid; pass a whole number >= 0"),
    (dict(u1="0.1", u2=0.5), r"u1='0.1' .*number"),  # was parsed and recorded as a string
])
def test_rap_settings_are_refused_before_the_model_loads(setup, tmp_path, bad, match):
    ds, kw = setup
    before = set(ds.get_field_schema())
    with pytest.raises(OODInputError, match=match):
        ood.compute_rap_scores(ds, "rap", label_field="ground_truth", k_per_class=1, num_crops=4, num_keep=2,
                               **{**_missing_weights(kw, tmp_path), **bad})
    assert _untouched(ds, before)


def test_weights_of_a_model_with_other_widths_are_refused_with_the_fix(tiny_clip, tmp_path, setup):
    """A checkpoint of another architecture whose text tower is wider (ViT-L-14 weights with model_name left at
    ViT-B-16) stopped in open_clip with 'AssertionError: text pos_embed width changed!'."""
    import open_clip

    cfg = json.loads(json.dumps(tiny_clip.cfg))
    cfg["text_cfg"]["width"] = 64
    path = tmp_path / "ood-test-tiny-clip-wide-text.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    with pytest.raises(OODInputError, match=r"do not fit open_clip model 'ood-test-tiny-clip-wide-text'.*model_name"):
        CLIPEncoder("ood-test-tiny-clip-wide-text", pretrained=str(tiny_clip.safetensors)).embed_dim
    ds, _ = setup
    with pytest.raises(OODInputError, match="do not fit"):
        ood.compute_clip_embeddings(ds, "clip", model_name="ood-test-tiny-clip-wide-text",
                                    pretrained=str(tiny_clip.safetensors), progress=False)
    assert not ds.has_field("clip")


@pytest.mark.parametrize("labels, match", [
    (["Bag", "Coat", "", "Coat"], r"non-empty strings; got \[''\]"),
    (["Bag", "bag", "Coat", "Coat"], r"distinct .*duplicates: \['bag'\]"),
])
def test_unusable_classes_of_a_label_field_name_the_field_and_the_fix(dataset_factory, fashion_files, setup,
                                                                      labels, match):
    """The error spoke of 'ID class names' the user never gave, without the way out."""
    paths, _ = fashion_files
    ds = dataset_factory(paths[:4], labels)
    _, kw = setup
    for scorer in (ood.compute_neglabel_scores, ood.compute_adaneg_scores):
        with pytest.raises(OODInputError, match=rf"classes of label field 'ground_truth' \(its labels\).*{match}"
                                                r".*id_labels=\[\.\.\.\]"):
            scorer(ds, "s", label_field="ground_truth", **kw)
    assert not ds.has_field("s")


def test_explain_adaneg_memory_after_the_embeddings_were_recomputed_by_another_model(setup, tiny_clip_factory):
    """explain_sample compared the sample with memory vectors of another model: a raw numpy matmul error (or,
    at the same dimension, meaningless similarities)."""
    ds, kw = setup
    model = dict(model_name=kw["model_name"], pretrained=kw["pretrained"])
    ood.compute_clip_embeddings(ds, "clip", progress=False, **model)
    ood.compute_adaneg_scores(ds, "ada", label_field="ground_truth", embeddings_field="clip", gap=0.0, **kw)
    sample = ds.first()
    assert ood.explain_sample(ds, "ada", sample.id, cache_dir=kw["cache_dir"])["memory"]
    small = tiny_clip_factory(name="ood-test-tiny-clip-16", embed_dim=16)
    ood.compute_clip_embeddings(ds, "clip", model_name=small.name, pretrained=str(small.safetensors), overwrite=True,
                                progress=False)
    out = ood.explain_sample(ds, "ada", sample.id, cache_dir=kw["cache_dir"])
    assert out["memory"] is None and out["score"] == sample["ada"]
