"""The forms' answers computed from the samples are kept until the dataset changes (``ood_core/fo/form_cache.py``):
a second keystroke does not scan the samples again, and every kind of change asks again."""

import numpy as np

import form_helpers as forms
from ood_core.fo import form_cache


def _counting(calls):
    def compute(samples, *args):
        calls.append(args)
        return len(samples)
    return compute


def test_an_answer_is_kept_until_the_samples_schema_or_runs_change(form_images):
    ds, calls = form_images, []
    ask = lambda samples, *args: form_cache.memo(samples, "n", _counting(calls), *args)  # noqa: E731
    assert ask(ds) == 40 and ask(ds) == 40 and len(calls) == 1  # kept
    assert ask(ds.match_tags("trusted")) == 20 and len(calls) == 2  # another view: its own answer
    assert ask(ds.match_tags("trusted")) == 20 and len(calls) == 2  # the same view built again (each keystroke)
    assert ask(ds, "x") == 40 and len(calls) == 3  # other arguments: their own answer
    changes = [
        lambda: ds.take(2, seed=1).tag_samples("new_tag"),               # tags
        lambda: ds.set_values("vec", [np.zeros(3)] * len(ds)),           # a new field's values
        lambda: ds.delete_samples(ds.take(1, seed=2)),                   # a deletion
        lambda: ds.delete_sample_field("vec"),                           # the schema
        lambda: ds.save_view("worst", ds.limit(3)),                      # saved views
    ]
    for change in changes:
        before = len(calls)
        change()
        ask(ds)
        assert len(calls) == before + 1, "a change to the dataset must be seen"
        ask(ds)
        assert len(calls) == before + 1  # and kept again
    assert ask(ds) == 39


def test_a_form_reuses_its_scans_and_shows_the_new_coverage_after_embeddings_change(form_images, monkeypatch):
    from ood_core.fo import inventory

    ds = form_images
    calls = []
    real = inventory.embedding_coverage
    monkeypatch.setattr(inventory, "embedding_coverage", lambda *a: calls.append(a) or real(*a))  # a spy
    rng = np.random.default_rng(0)
    ds.limit(10).set_values("vec", list(rng.normal(size=(10, 8)).astype(np.float32)))
    params = dict(embeddings_field="vec", method="knn", reference_tag="trusted")
    first = forms.props("score_ood", ds, params)["embeddings_field_coverage"].view.label
    assert "for 10 of 40 samples" in first
    forms.props("score_ood", ds, dict(params, score_field="typed_more"))  # the next keystroke
    asked = [(form_cache.view_key(a[0]), a[1:]) for a in calls]
    assert calls and len(set(asked)) == len(asked), "the same coverage was counted twice"
    ds.skip(10).limit(15).set_values("vec", list(rng.normal(size=(15, 8)).astype(np.float32)))
    second = forms.props("score_ood", ds, params)["embeddings_field_coverage"].view.label
    assert "for 25 of 40 samples" in second


def test_the_trusted_default_and_tag_list_follow_new_tags(form_images):
    ds = form_images
    ds.untag_samples("trusted")
    props = forms.props("audit_dataset", ds, {})
    assert props["reference_tag"].default is None
    ds.take(5, seed=0).tag_samples("trusted")
    props = forms.props("audit_dataset", ds, {})
    assert props["reference_tag"].default == "trusted"
    assert "trusted" in props["reference_tag"].type.values


def test_the_output_checks_look_into_the_documents_once_per_name_and_see_a_new_user_field(form_dataset, monkeypatch):
    from ood_core.fo import documents

    ds, calls = form_dataset, []
    real = documents.has_values
    monkeypatch.setattr(documents, "has_values", lambda *a: calls.append(a[1]) or real(*a))  # a spy
    params = dict(embeddings_field="vec", method="knn", reference_tag="trusted", score_field="mine", overwrite=True)
    assert not forms.props("score_ood", ds, params)["score_field"].invalid
    looked = len(calls)
    assert looked and "mine" in calls
    assert not forms.props("score_ood", ds, params)["score_field"].invalid  # the next keystroke
    assert len(calls) == looked
    ds.set_values("mine", [1.0] * len(ds))  # the curator's own field of that name
    prop = forms.props("score_ood", ds, params)["score_field"]
    assert prop.invalid and "'mine'" in prop.error_message
