"""What overwriting a score run from a view must keep: one scale for the samples inside and outside the view.

Overwriting from a view replaces only the view's values; the other samples keep theirs under the new record. That
is consistent only when the new scores are on the scale of the old ones: computed by the same method, from the
same embeddings and labels, against the same trusted reference (the same samples: the calibrated p-values count
them), with the same classes, vocabulary and levels, and when a sample's score does not depend on which other
samples were scored with it. Anything else is refused before a value is written, naming what differs.
"""

import json

from ..errors import OODInputError

#: the detector's parameters that do not change its scores' scale: how neighbours are searched, and the settings
#: of the scored-set density ratio (a run that used the ratio is refused anyway: :func:`scored_set_dependence`)
SEARCH_PARAMS = ("backend", "index", "transductive", "transductive_alpha", "transductive_weight", "class_mix_gate")

#: what decides a score's scale: the detector and its parameters (k, class means, ...) but not how it searches; the
#: embeddings' settings (``backbone``: the same field recomputed with another model or level is another scale); the
#: reference whole (which samples, how many: the p-values are fractions of them)
SCALE_PARAMS = {
    "detector": lambda d: {key: value for key, value in (d or {}).items() if key not in SEARCH_PARAMS},
    "reduction": None, "embeddings_field": None, "backbone": None, "label_field": None,
    "clip": None, "reference": None, "id_labels": None, "lexicon": None, "neglabel": None, "rap": None,
    "adaneg": None, "few_shot": None, "levels": None, "level_indices": None,
}


def refuse_other_settings_from_a_view(dataset, run_key, params, kind=None):
    """A score run replaced from a view with other :data:`SCALE_PARAMS`, or by (or in place of) a run whose scores
    depend on the scored set: the samples outside the view would keep scores on another scale under a record that
    describes the new ones; refuse. ``kind``: the new run's kind (None: check the settings only, as the audit does
    before it computes anything)."""
    if not dataset.has_run(run_key):
        return
    old = dataset.get_run_info(run_key).config

    def norm(name, value):
        pick = SCALE_PARAMS[name]
        return json.dumps(pick(value) if pick else value, sort_keys=True, default=str)

    changed = [name for name in SCALE_PARAMS
               if name in params and norm(name, getattr(old, name, None)) != norm(name, params[name])]
    if changed:
        raise OODInputError(
            f"run {run_key!r} was computed with other {', '.join(changed)} than this call; overwriting it from a view "
            f"would leave the other samples' scores, on another scale, under the new record. {_fix(dataset, run_key)}"
        )
    if kind is not None:
        refuse_scored_set_dependence(dataset, run_key, kind, params)


def refuse_scored_set_dependence(dataset, run_key, kind, params):
    """Refuse replacing run ``run_key`` from a view when its scores, or the new run's (``kind``, ``params``),
    depend on the set of samples scored together (:func:`scored_set_dependence`)."""
    if not dataset.has_run(run_key):
        return
    old = dataset.get_run_info(run_key).config
    why = scored_set_dependence(getattr(old, "kind", None), old.__dict__) or scored_set_dependence(kind, params)
    if why:
        raise OODInputError(
            f"run {run_key!r}: {why}, so a score depends on which samples are scored together; overwriting it "
            f"from a view would leave the other samples' scores, from another set, under the new record. "
            f"{_fix(dataset, run_key)}"
        )


def _fix(dataset, run_key):
    """What to do instead of overwriting from a view (a grouped dataset's calls always see one slice: never its
    whole dataset)."""
    if dataset.media_type == "group":
        return (f"A grouped dataset is scored one slice at a time: write each slice's scores to a field of its own, "
                f"or delete the run first (ood.delete_ood_run(dataset, {run_key!r}) deletes every slice's values) and "
                "score again")
    return "Overwrite on the whole dataset, or write to another score field"


def scored_set_dependence(kind, params):
    """Why the OOD scores of a run depend on the other samples scored with them ('' when they do not)."""
    if kind == "adaneg":
        return "AdaNeg's memory adapts to the images it scores"
    if kind == "rap" and params.get("test_time"):
        return "RAP's test-time updates follow the images it scores"
    if kind == "label_issues":
        return "a wrong-label score weighs each sample's label against the samples scored with it (their votes)"
    if kind != "ood_scores":
        return ""  # zero-shot NegLabel scores each image alone
    if params.get("reference") is None:
        return "without a trusted reference the scored samples are their own reference"
    if ((params.get("detector_fitted") or {}).get("transductive") or {}).get("used"):
        return "the scored set's density ratio was used"
    return ""


def refuse_dropping_from_a_view(dataset, run_key, targets):
    """A run replaced from a view by one that writes fewer fields: the fields it would drop hold the values of
    the samples outside the view too, which an overwrite from a view keeps; refuse instead of deleting them."""
    from .commit import dropped_fields

    extra = dropped_fields(dataset, run_key, targets)
    if extra:
        raise OODInputError(
            f"run {run_key!r} also wrote {extra}, which this call does not write; overwriting it from a view would "
            f"delete them for the samples outside the view as well. {_fix(dataset, run_key)}"
        )


def refuse_before_scoring(samples, run_key, kind, settings):
    """Overwriting ``run_key`` from a view (``samples``; the whole dataset: nothing to refuse): refuse what the
    write would refuse and the call's settings already tell (:func:`refuse_other_settings_from_a_view`, a run
    without a trusted reference or a wrong-label run: :func:`scored_set_dependence`), before minutes of scoring.
    Whether a new run uses the scored set's density ratio is known once it is computed; the write refuses it."""
    from .items import is_whole_dataset

    if is_whole_dataset(samples):
        return
    refuse_scored_set_dependence(samples._dataset, run_key, kind, settings)  # first: the same settings would not do
    refuse_other_settings_from_a_view(samples._dataset, run_key, settings)
