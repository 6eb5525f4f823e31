"""The review panel's state: where the App keeps each input's value, which run and threshold the panel starts
at and what it says about them, the values typed into the preset input, the panel's own flags run and the
histogram's axes.

Where the App keeps input values: an input defined on the panel itself is stored under its name
(``run_key``, ``gt_field``, the threshold slider); an input inside an ``h_stack`` / ``v_stack`` / ``obj`` is
stored *nested* under the stack's name, e.g. ``{"presets": {"preset": "top_n", "preset_value_top_n": 3},
"flags": {"flag_tag": "ood"}}``, and is read with the dotted path (``ctx.panel.get_state("presets.preset")``,
FiftyOne's ``PanelRefState.get`` is a ``pydash.get``). The App also stores every input's *default* as soon as
it renders it (and calls its ``on_change``), so a slider's stored value equals the default it was drawn with
until the user moves it.

Which run: the one the App's dropdown holds; on a view the panel has not seen last, the run that view is
sorted by (:func:`sorted_run`: an audit's saved view opens its own run, also when the panel was open on
another run; a new dropdown, :func:`run_state_key`); with no run chosen yet, :func:`default_run`.

Where the threshold comes from (:func:`threshold_source`): the preset applied on this view, else the newest
flags run saved from the score run (an audit's, or an earlier **Save as flags**), else the default (top 5%
of the view); a slider value that differs from it was set by hand. Every view has its own slider
(:func:`threshold_state_key`), so a threshold set on one view never follows the user to another one. A slider
never moved follows its run when the run is scored again, a moved one keeps the curator's threshold
(:func:`slider_in_use`).

Pure functions of a dataset / view and plain values, tested without a browser (``tests/test_panel*.py``).
"""

import hashlib
import json
import math
import threading
import weakref

from . import review as review_data

#: the panel's horizontal stacks: the App stores their inputs under ``<stack>.<input>``
PRESETS_STACK = "presets"
FLAGS_STACK = "flags"

#: where the App keeps the values of the inputs inside the stacks (dotted panel-state paths)
PRESET_PATH = f"{PRESETS_STACK}.preset"
FLAG_TAG_PATH = f"{FLAGS_STACK}.flag_tag"


def preset_value_name(preset):
    """Name of the value input of ``preset`` (one input per preset, so each keeps its own value)."""
    return f"preset_value_{preset}"


def preset_value_path(preset):
    """Panel-state path of the value typed for ``preset`` (inside the presets stack)."""
    return f"{PRESETS_STACK}.{preset_value_name(preset)}"


# --------------------------------------------------------------------------- per-view state keys


def view_signature(samples):
    """``""`` for a whole dataset, else 8 hex digits naming the view's stages (their classes and arguments):
    the same for a saved view and the same stages typed again."""
    stages = samples._serialize() if getattr(samples, "_stages", None) else []
    if not stages:
        return ""
    text = json.dumps([(st.get("_cls"), st.get("kwargs")) for st in stages], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _suffix(view_sig):
    return f"__view_{view_sig}" if view_sig else ""


def _run_part(run_key):
    """A run key inside a panel-state key, its underscores doubled: the keys of two runs never meet (run
    ``ood_v1``'s slider is not run ``ood``'s version 1, run ``version_ood``'s not ``ood``'s version counter);
    keys without an underscore read as before."""
    return run_key.replace("_", "__")


def threshold_state_key(run_key, version=0, view_sig="", run_token=""):
    """Panel-state key of the threshold slider of a run on a view: one slider per run and view, so switching
    runs or views never needs a server-side write to the slider's value. Applying a preset bumps ``version``:
    a new slider whose default is the preset's threshold. ``run_token`` (the run's timestamp) is given when the
    preset applied was cut on an earlier computation of the run (:func:`applied_preset`): a new slider, so the
    App's value of the old one (the old preset's threshold) is not taken for the curator's."""
    base = f"threshold_{_run_part(run_key)}{_suffix(view_sig)}"
    base = base if not version else f"{base}_v{version}"
    return base if not run_token else f"{base}_r{_token_hash(run_token)}"


def drawn_key(base):
    """Panel-state key of what the server knows of the slider ``base`` (a :func:`threshold_state_key`) stands for:
    ``{"key", "run", "start"}`` (:func:`slider_in_use`)."""
    return f"drawn_{base}"


def slider_record(key, run_token, start):
    """What :func:`drawn_key` holds once the App stored the slider ``key`` at the threshold it was drawn with,
    ``start``, while the run's timestamp was ``run_token``."""
    return {"key": key, "run": run_token, "start": float(start)}


def slider_in_use(state, base, run_token):
    """The slider (panel-state key) of a run on a view: ``base`` (:func:`threshold_state_key`), or the one
    :func:`drawn_key` names. One that was never moved (it holds the threshold it was drawn with) while the run
    was another computation (re-scored with overwrite, or deleted and scored again under the same key) gives way
    to a new slider for this computation (``base`` + the run's timestamp): the App keeps a slider's own value,
    and the old one would keep the old scores' starting threshold, shown as "set by hand". A slider the curator
    moved stays, with its threshold. ``state``: the panel state's ``get``."""
    drawn = state(drawn_key(base))
    if not isinstance(drawn, dict):
        return base
    key = drawn.get("key")
    mine = key == base or (isinstance(key, str) and key.startswith(f"{base}_r") and len(key) == len(base) + 10)
    if not mine:  # (a state left by another version of the panel)
        return base
    if drawn.get("run") == run_token:
        return key
    value, start = state(key), drawn.get("start")
    untouched = value is None or (_is_number(value) and _is_number(start) and same_threshold(value, start))
    return f"{base}_r{_token_hash(run_token)}" if untouched else key


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _token_hash(run_token):
    return hashlib.sha1(str(run_token).encode()).hexdigest()[:8]


def state_version(value):
    """A version number the panel keeps in its state (``run_version``, a slider's version) as an ``int`` >= 0; 0
    for a value of another type (a state left by another version of the panel), which would raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return 0
    try:
        number = float(value)
    except ValueError:
        return 0
    return int(number) if math.isfinite(number) and number >= 0 else 0


def version_key(run_key, view_sig=""):
    """Panel-state key of the slider version of a run on a view (bumped by each applied preset)."""
    return f"threshold_version_{_run_part(run_key)}{_suffix(view_sig)}"


def run_state_key(version=0):
    """Panel-state key of the run dropdown: ``run_key``, then ``run_key_v<n>`` after the panel switched runs
    on a view change (a new dropdown drawn with the new run: the App keeps a dropdown's own value)."""
    return "run_key" if not version else f"run_key_v{version}"


def stale_run_message(state, runs):
    """What the buttons say instead of acting when the run the App's dropdown holds is no reviewable score run
    any more (deleted or renamed meanwhile, e.g. from a notebook), else None: the panel draws another run in its
    place, and saving flags or applying a preset would silently act on that one. ``state``: the panel state's
    ``get``."""
    version = state_version(state("run_version"))
    held = state(run_state_key(version))
    if held is None and version:
        held = state("run_start")
    if not isinstance(held, str) or held in runs:
        return None
    return (f"the score run {held!r} no longer exists (deleted or renamed meanwhile, e.g. from a notebook, or its "
            f"scores were deleted): pick a run in 'Score run' ({', '.join(repr(r) for r in runs)})")


def preset_key(run_key, view_sig=""):
    """Panel-state key of the preset applied to a run on a view: ``{"threshold", "label", "run"}`` (``run``: the
    run's timestamp when the preset was applied)."""
    return f"preset_{_run_part(run_key)}{_suffix(view_sig)}"


def applied_preset(stored, run_token):
    """``(preset, stale)``: the preset applied (:func:`preset_key`) that the threshold starts at, or ``{}``; and
    whether one was dropped because it was cut on an earlier computation of the run (its ``run`` is not the
    run's timestamp ``run_token``: re-scored with overwrite, or deleted and scored again under the same key),
    whose threshold and label ("top 4") no longer hold. A value that is no preset (a state left by another
    version of the panel) gives ``{}``."""
    if not isinstance(stored, dict):
        return {}, False
    threshold = stored.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        return {}, False
    if stored.get("run") is not None and run_token is not None and stored["run"] != run_token:
        return {}, True
    return stored, False


# --------------------------------------------------------------------------- one read per App request

_request_lock = threading.Lock()
_request_answers = weakref.WeakKeyDictionary()  # ExecutionContext -> {question: answer}; gone with the request


def request_memo(ctx, question, compute):
    """``compute()`` once per App request: the event handler and the render that FiftyOne calls after it
    (``Panel.execute``) share the answer, also across the handler's own writes (Save as flags writes flags and
    tags, never the scores or the ground truth the panel reads)."""
    with _request_lock:
        answers = _request_answers.setdefault(ctx, {})
        if question in answers:
            return answers[question]
    answer = compute()
    with _request_lock:
        answers[question] = answer
    return answer


# --------------------------------------------------------------------------- the run and the threshold


def sorted_run(dataset, samples, runs):
    """The run whose score field the view is sorted by (an audit's saved views are sorted by their run's
    scores), else None."""
    fields = [stage.field_or_expr for stage in getattr(samples, "_stages", ())
              if type(stage).__name__ == "SortBy" and isinstance(stage.field_or_expr, str)]
    for field in reversed(fields):
        for key in runs:
            if review_data.run_summary(dataset, key)["score_field"] == field:
                return key
    return None


def default_run(dataset, samples, runs):
    """The run the panel starts with: :func:`sorted_run`, else the first run that is no label-issue run, else
    the first run."""
    hint = sorted_run(dataset, samples, runs)
    if hint is not None:
        return hint
    return next((key for key in runs if review_data.run_summary(dataset, key)["kind"] != "label_issues"), runs[0])


def pick_threshold(stored, scores, fallback=None):
    """The stored slider value if it lies within the slider's range (the scores' range, widened to
    ``fallback``), else ``fallback``, else the default (top 5%)."""
    if len(scores) == 0:
        return 0.0 if fallback is None else float(fallback)
    lo, hi = float(scores.min()), float(scores.max())
    if fallback is not None:
        lo, hi = min(lo, float(fallback)), max(hi, float(fallback))
    if isinstance(stored, (int, float)) and not isinstance(stored, bool) and lo <= stored <= hi:
        return float(stored)
    if fallback is not None:
        return float(fallback)
    return review_data.default_threshold(scores)


def threshold_text(threshold, scores):
    """The threshold as the panel writes it: 4 decimals, or every digit when a score written the same is not
    flagged (a threshold just above the scores it stops, as constant scores or a preset that flags nothing give:
    written ``>= 0.5000`` while every score is 0.5 and none is flagged, the count and the saved flags contradicted
    it)."""
    text = f"{threshold:.4f}"
    shown = float(text)
    if shown < threshold and len(scores) and bool((scores == shown).any()):
        return repr(float(threshold))
    return text


def same_threshold(a, b):
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)), abs(float(b)))


def flags_rule_sentence(info, reference_tag=None):
    """A short sentence for the rule of a flags run's record (``rule_name`` and ``value``)."""
    name, value = info.get("rule_name"), info.get("value")
    if value is None:
        return name or "threshold rule"
    if name == "percentile_of_reference":
        tag = (info.get("reference") or {}).get("tag") or reference_tag
        return f"{100 * value:g}% of " + (f"'{tag}'" if tag else "the reference samples") + " pass"
    sentences = {"top_fraction": f"top {100 * value:g}%", "top_n": f"top {value:g}",
                 "threshold_at_fpr": f"FPR <= {100 * value:g}%", "fixed_threshold": "fixed threshold",
                 "p_value": f"p-value <= {value:g}"}
    return sentences.get(name, name or "threshold rule")


def stored_threshold(samples, summary):
    """``(threshold, label)`` of the newest flags run saved from the score run (an audit's flags, or an earlier
    Save as flags) whose threshold is finite, else None."""
    from ood_core.fo import runs as fo_runs
    from ood_core.fo.evaluation import list_flag_runs

    dataset = samples._dataset
    keys = sorted(list_flag_runs(dataset, summary["run_key"]), key=lambda k: dataset.get_run_info(k).timestamp,
                  reverse=True)
    for key in keys:
        info = fo_runs.get_ood_run_info(dataset, key)
        threshold = (info.get("rule") or {}).get("threshold")
        if threshold is None:  # the p-value rule records its score threshold in the results only
            threshold = getattr(fo_runs.load_ood_results(dataset, key), "threshold", None)
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and math.isfinite(threshold):
            return float(threshold), f"saved flags '{key}': {flags_rule_sentence(info, summary['reference_tag'])}"
    return None


def threshold_source(samples, summary, scores, preset=None):
    """``(threshold, label)`` the slider starts at on this view: the ``preset`` applied here, else the newest
    saved flags of the run (:func:`stored_threshold`), else the default (top 5% of the view's scores)."""
    if preset and preset.get("threshold") is not None:
        return float(preset["threshold"]), f"preset: {preset.get('label')}"
    stored = stored_threshold(samples, summary)
    if stored is not None:
        return stored
    return review_data.default_threshold(scores), f"default: top {100 * review_data.DEFAULT_TOP_FRACTION:g}%"


# --------------------------------------------------------------------------- values typed into the presets

#: preset -> (lowest, highest, lowest allowed?) of its value; top_n is a whole number >= 1
_PRESET_RANGES = {"top_fraction": (0.0, 1.0, True), "percentile": (0.0, 1.0, False), "fpr": (0.0, 1.0, True),
                  "pvalue": (0.0, 1.0, True)}


def preset_value(name, raw):
    """The value typed into the preset's input as a number (``int`` for ``top_n``); None = the preset's default.

    Raises :class:`~ood_core.errors.OODInputError` naming the input, the problem and the fix for text that is
    no number, an empty input, a boolean, NaN / infinity, a value outside the preset's range and, for
    ``top_n``, a number that is not whole (2.7 is refused, not applied as 2).
    """
    from ood_core.errors import OODInputError

    label, value_label, default = review_data.PRESETS[name]
    if raw is None:
        return default
    what = f"'{value_label}' of the '{label}' preset"
    if name == "top_n":
        fix = f"type how many of the highest scores to flag, a whole number >= 1 (e.g. {default:g})"
    else:
        low, high, closed = _PRESET_RANGES[name]
        fix = f"type a number between {low:g} ({'included' if closed else 'excluded'}) and {high:g}, e.g. {default:g}"
    text = raw.strip() if isinstance(raw, str) else None
    if text == "":
        raise OODInputError(f"{what} is empty; got {raw!r}: {fix}")
    try:
        if isinstance(raw, bool):
            raise TypeError
        value = float(text if text is not None else raw)
    except (TypeError, ValueError):
        raise OODInputError(f"{what} must be a number; got {raw!r}: {fix}") from None
    if not math.isfinite(value):
        raise OODInputError(f"{what} must be a finite number; got {raw!r}: {fix}")
    if name == "top_n":
        if value != int(value) or value < 1:
            raise OODInputError(f"{what} must be a whole number >= 1; got {raw!r}: {fix}")
        return int(value)
    if not (low < value <= high or (closed and value == low)):
        raise OODInputError(f"{what} must be between {low:g} and {high:g}; got {raw!r}: {fix}")
    return value


# --------------------------------------------------------------------------- the panel's own flags


def review_flag_field(summary):
    """The flag field (and flags run key) of the panel's **Save as flags**: ``<run key>_review_flag``, next to
    the ``<score>_flag`` of ``ood.flag_samples`` and of the audit, which the panel never replaces (named after the
    run key, unique on the dataset: a sample run and an object run whose score attributes share a name keep
    separate flags)."""
    return f"{summary['run_key']}_review_flag"


def refuse_tags_the_panel_reads(samples, summary, tag):
    """Refuse a *Tag for flags* the panel itself reads: the trusted tag (the percentile preset's reference, also
    when the run records none: ``trusted``), which would make the flagged samples trusted, and the review tags,
    which would count machine flags as the curator's decisions."""
    from ood_core.errors import OODInputError
    from ood_core.fo import inventory

    if not tag:
        return
    reference = summary.get("reference_tag") or inventory.default_reference_tag(samples)
    why = {reference: "the tag of the trusted samples (the percentile preset reads it): flagged samples would "
                      "count as trusted from then on"}
    why.update({t: f"the review tag of 'Tag selected: {t}': flagged samples would count as reviewed by you"
                for t in review_data.REVIEW_TAGS.values()})
    if why.get(tag):
        raise OODInputError(f"'Tag for flags' is {tag!r}, {why[tag]}; nothing was saved: type another tag, e.g. "
                            f"{review_data.default_flag_tag(summary)!r}")


def flag_tag_value(raw, summary):
    """The *Tag for flags* typed (spaces around it dropped; ``""`` = no tag), its default when it was never
    rendered (None). A value that is no text (a state left by another version of the panel, a stale client) is
    refused, naming it and the fix, instead of tagging the flagged items with its ``str`` (``"['a', 'b']"``)."""
    from ood_core.errors import OODInputError

    if raw is None:
        return review_data.default_flag_tag(summary)
    if not isinstance(raw, str):
        raise OODInputError(f"'Tag for flags' is {raw!r} ({type(raw).__name__}), not text; nothing was saved: type "
                            f"a tag, e.g. {review_data.default_flag_tag(summary)!r}, or clear it for flags without "
                            "a tag")
    return raw.strip()


def save_review_flags(samples, summary, threshold, tag):
    """Save the panel's threshold as flags under the panel's own flags run (:func:`review_flag_field`; re-saving
    replaces only that run and the tags it added) with :func:`ood_core.flag_samples`.

    Returns its summary plus ``kept_runs`` (the other flags runs of the score run, e.g. the audit's, untouched)
    and ``num_with_tag`` (items of the dataset carrying ``tag`` afterwards: the other runs may tag some too).
    """
    import ood_core as ood
    from ood_core.fo.evaluation import list_flag_runs
    from ood_core.fo.items import item_columns

    field = review_flag_field(summary)
    patches = summary["patches_field"]
    # ids and scores in one pass over the view, handed to flag_samples (it would read each column again)
    id_path = "id" if patches is None else f"{patches}.detections.id"
    (ids, raw), _ = item_columns(samples, [id_path, summary["score_field"]], patches)
    out = ood.flag_samples(samples, summary["run_key"], rule="threshold", value=float(threshold), flag_field=field,
                           flag_key=field, tag=tag or None, overwrite=True, item_scores=(ids, raw))
    dataset = samples._dataset
    out["kept_runs"] = [key for key in list_flag_runs(dataset, summary["run_key"]) if key != out["flag_key"]]
    if tag:  # sample tags: count only the tagged samples (counting every tag unwinds the whole dataset)
        out["num_with_tag"] = int(dataset.count_label_tags(patches).get(tag, 0)) if patches else \
            dataset.match_tags(tag).count()
    return out


def save_flags_message(out, noun):
    """The notification after Save as flags: what was written (the flags of the view the panel counted), what was
    kept (the other flags runs; the flags an earlier save left on items outside this view), who carries the tag."""
    in_view = out.get("num_flagged_in_view", out["num_flagged"])
    text = f"saved {in_view} flags in '{out['flag_field']}' (run '{out['flag_key']}')"
    if out.get("tag"):
        text += f", tagged '{out['tag']}'"
    if out.get("kept_runs"):
        text += (f"; kept the flags run(s) {', '.join(repr(k) for k in out['kept_runs'])} of this score run (the "
                 "panel replaces only its own flags)")
    if out["num_flagged"] > in_view:  # re-flagging a view keeps the flags (and tags) of the items outside it
        text += (f"; {out['num_flagged'] - in_view} {noun} outside the current view keep the flags of an earlier "
                 f"save ({out['num_flagged']} in the field)")
    if out.get("tag") and "num_with_tag" in out:
        text += f"; {out['num_with_tag']} {noun} carry '{out['tag']}' now"
    return text


# --------------------------------------------------------------------------- histogram axes


def score_axis(scores, threshold):
    """The histogram's score axis: the scores' range widened to the threshold, plus a margin, so a threshold at
    the highest (or lowest) score is drawn inside the plot, not on its edge."""
    lo, hi = float(scores.min()), float(scores.max())
    hi = hi if hi > lo else lo + 1.0  # constant scores: the histogram's one bin spans [lo, lo + 1]
    lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    pad = 0.04 * (hi - lo)
    return {"title": {"text": "score"}, "range": [lo - pad, hi + pad]}


def count_axis(traces):
    """The histogram's count axis: whole-number ticks (1, 2, 5, 10, 20, ... apart; about 8 at most)."""
    top = max((max(t["y"]) for t in traces if t.get("y")), default=0)
    step = 1
    while top / step > 8:
        step = _next_step(step)
    return {"title": {"text": "count"}, "tick0": 0, "dtick": step, "tickformat": "d", "rangemode": "tozero"}


def _next_step(step):
    """1, 2, 5, 10, 20, 50, ..."""
    digits = 10 ** int(math.floor(math.log10(step)))
    lead = step // digits
    return {1: 2, 2: 5, 5: 10}[lead] * digits
