"""Panel: the curator's review loop over a fiftyone-ood score run ("OOD review").

Pick a score run (sample- or object-level), (optionally) a boolean
ground-truth field, look at the score histogram, the metrics and the ROC / PR
curves, set the threshold (slider or a preset: percentile of the trusted
samples, target FPR, top N, calibrated p-value when the run has one), open the
flagged samples in the grid (highest score first), save the threshold as flags
(``ood.flag_samples`` into the panel's own flags run ``<score>_review_flag``: an
audit's flags run is never replaced) and record review decisions as sample tags.

The panel starts on the run the view is sorted by (an audit's saved views are),
else on the first OOD run; its threshold starts at the newest saved flags of the
run (the audit's threshold, or an earlier Save as flags), else at the top 5% of
the view, and the panel says which (or "set by hand"). Each run has one slider
per view, so a threshold set on one view does not follow the user to another.
Where the App keeps the inputs' values (inputs inside a stack are nested under
its name) and the starting threshold: :mod:`operators.panel_state`.

Conventions (the same as everywhere in this package): scores are **higher =
more suspicious**; a sample is **flagged** when ``score >= threshold``; the
ground-truth field is True for the **positive class** (OOD, or "wrong label"
for label-issue runs). The panel reads the App's **current view** (filters,
tags, saved views); the flagged view it opens itself is recognised and
undone for reading, so opening the flagged samples does not change the
histogram or the slider range. On a patches view of an object run's label field
(``to_patches``, or evaluation patches holding it) the panel reviews exactly the
objects that view shows (histogram, counts, presets, metrics, Save as flags: the
objects outside keep their flags), as ``ood.evaluate_ood_run`` evaluates them
(:func:`review.shown_objects`); other patches, frames and clips views, and sample
runs on a patches view, are reviewed as their whole dataset. The views it opens
keep the user's stages, ``select_fields`` / ``exclude_fields`` included (put after
the panel's own); in a patches view of an object run's label field it opens the
flagged patches.
Review decisions tag the selected samples; in a patches view of an object run's
label field they tag the selected objects, in other patches / frames / clips
views the samples they come from. On an object run the objects selected in the
sample modal come first: they are tagged, the grid's selection is kept. What the
buttons act on: :mod:`operators.panel_selection`.

Reads: every column the panel shows (scores, ground truth) is read in one pass over the view, once per App
request (the event handler and the render after it share it, :func:`panel_state.request_memo`), and kept
between events until the dataset changes (:func:`review.view_scores`), so a slider move reads nothing.

Everything the panel computes lives in small module-level functions that take
a dataset (or view) and plain values, so it is tested without a browser
(``tests/test_panel.py``); the :class:`OODReviewPanel` class only wires them to
App events.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ood_core.fo.form_cache import view_key
from ood_core.fo.run_sync import one_look  # each read below looks at the runs once, not once per run

from . import review as review_data
from .panel_selection import is_generated, review_app_selection, selection_text
from .panel_state import (FLAG_TAG_PATH, FLAGS_STACK, PRESET_PATH, PRESETS_STACK, applied_preset, count_axis,
                          default_run, drawn_key, flag_tag_value, pick_threshold, preset_key, preset_value,
                          preset_value_name, preset_value_path, refuse_tags_the_panel_reads, request_memo,
                          run_state_key, same_threshold, save_flags_message, save_review_flags, score_axis,
                          slider_in_use, slider_record, sorted_run, stale_run_message, state_version, threshold_source,
                          threshold_state_key, threshold_text, version_key, view_signature)

# --------------------------------------------------------------------------- the panel


@one_look()
def reviewable_runs(dataset):
    """The score runs the panel offers (:func:`review.score_runs`), minus the object runs whose score attribute
    was deleted or renamed by hand while their label field stayed. Object attributes need not be declared in the
    schema, so an undeclared one counts as present while some object holds a value."""
    from ood_core.fo import runs as fo_runs

    dataset = dataset._dataset
    keys = []
    for key in review_data.score_runs(dataset):
        info = fo_runs.get_ood_run_info(dataset, key)
        path = fo_runs.score_path(info)
        if info.get("patches_field") and dataset.get_field(path) is None and not dataset.count(path):
            continue
        keys.append(key)
    return keys


# --------------------------------------------------------------------------- views and selections


def with_field_stages(flagged, user_view):
    """``flagged`` with the ``select_fields`` / ``exclude_fields`` stages of the App's view put back after the
    panel's own stages (the panel reads and filters with every field shown; what the user hid stays hidden)."""
    from ood_core.fo.view_checks import field_stages

    for stage in field_stages(user_view):
        flagged = flagged.add_stage(stage)
    return flagged


def run_patches_view(view, patches_field):
    """The App's view when it is a patches view (``to_patches``) of the run's label field, else None."""
    import fiftyone.core.patches as fop

    if patches_field and isinstance(view, fop.PatchesView) and view.patches_field == patches_field:
        return view
    return None


def objects_patches(view, patches_field):
    """The App's view when it is a patches view showing the objects of an object run's label field
    (``to_patches(patches_field)``, or evaluation patches holding it), else None."""
    from ood_core.fo.patches_views import patches_view_fields

    fields = patches_view_fields(view) if patches_field and view is not None else None
    return view if fields and patches_field in fields else None


def patches_all_fields(patches):
    """A patches view without its ``select_fields`` / ``exclude_fields`` stages (every field shown)."""
    from ood_core.fo.view_checks import field_stages

    hidden = field_stages(patches)
    view = patches._base_view  # the patches view without its own stages
    for stage in patches._stages:
        if stage not in hidden:
            view = view.add_stage(stage)
    return view


def flagged_patches(patches, score_field, threshold):
    """The flagged objects of a patches view of the run's field (``score >= threshold``), highest score first;
    the view's own stages kept, its field-hiding stages left out (:func:`with_field_stages` puts them back)."""
    from fiftyone import ViewField as F

    path = f"{patches.patches_field}.{score_field.rsplit('.', 1)[1]}"
    return patches_all_fields(patches).match(F(path) >= float(threshold)).sort_by(path, reverse=True)


def review_counts_text(samples, summary):
    """The "Reviewed in this view" line: sample tags, and for object runs the object tags of the label field.
    Kept until the dataset changes (:func:`ood_core.fo.form_cache.memo`: tagging changes it)."""
    from ood_core.fo.form_cache import memo

    return memo(samples, "review_counts", lambda view, _: _review_counts_text(view, summary), summary["patches_field"])


def _review_counts_text(samples, summary):
    counts = review_data.review_counts(samples)
    text = f"Reviewed in this view: **{counts['confirmed']}** confirmed · **{counts['dismissed']}** dismissed"
    field = summary["patches_field"]
    if not field:
        return text
    tags = samples.count_label_tags(field)
    confirmed, dismissed = (int(tags.get(review_data.REVIEW_TAGS[d], 0)) for d in ("confirmed", "dismissed"))
    return f"{text} samples; objects of `{field}`: **{confirmed}** confirmed · **{dismissed}** dismissed"


# --------------------------------------------------------------------------- the panel class


class OODReviewPanel(foo.Panel):
    """The "OOD review" panel (see the module docstring).

    The App writes every input's value (and every input's default, once
    rendered) into the panel state itself, nested under the stack of an input
    inside ``h_stack`` (``presets.preset``, ``flags.flag_tag``); the event
    handlers below never write those values back (echoing a value while the
    App holds another one makes the App and the server trade values forever).
    They write only keys that are no input: the preset applied and the
    slider's version (per run and view), the flagged view this panel opened,
    the last view seen and the run dropdown's version (:meth:`_follow_view`).
    """

    @property
    def config(self):
        return foo.PanelConfig(
            name="ood_review",
            label="OOD review",
            icon="troubleshoot",
            surfaces="grid",
            help_markdown=(
                "Review a fiftyone-ood score run on the current view: histogram, metrics against a boolean "
                "ground-truth field, threshold (flag = score >= threshold; higher = more suspicious) from the "
                "slider or a preset, open the flagged samples in the grid, save them as flags, and tag selected "
                "samples (on object runs: the objects selected in the sample modal) `ood_confirmed` / "
                "`ood_dismissed`."
            ),
        )

    def _samples(self, ctx):
        """The current view of the App (minus the flagged view this panel opened), every field shown; a patches,
        frames or clips view as its whole dataset (the view the run is picked on; :meth:`_scope` then narrows a
        patches view of an object run's label field to its objects)."""
        from ood_core.fo.view_checks import show_all_fields

        view = ctx.view if ctx.view is not None else ctx.dataset.view()
        if is_generated(view):
            view = ctx.dataset.view()
        view = show_all_fields(view)
        state = ctx.panel.get_state
        return review_data.strip_panel_view(view, state("flagged_stages"), state("flagged_base"))

    def _scope(self, ctx, patches_field):
        """What the panel reviews for a run of label field ``patches_field``: ``{"samples", "patches", "objects"}``.
        On a patches view of that field (:func:`objects_patches`; the flagged patches this panel opened give back
        their base) the source view of the objects it shows (:func:`review.shown_objects`), the patches view and
        ``objects`` (the counts of objects shown and in the dataset); else :meth:`_samples` and two Nones."""
        patches = objects_patches(ctx.view, patches_field)
        if patches is None:
            return {"samples": self._samples(ctx), "patches": None, "objects": None}
        state = ctx.panel.get_state
        patches = review_data.strip_panel_view(patches_all_fields(patches), state("flagged_stages"),
                                               state("flagged_base"))
        objects = review_data.shown_objects(patches, patches_field)
        return {"samples": objects["samples"], "patches": patches, "objects": objects}

    @staticmethod
    def _run_key(ctx, runs, samples):
        """The run the App's dropdown holds, else the run it was drawn with after a view change
        (:meth:`_follow_view`), else the one the panel starts with (:func:`default_run`)."""
        state = ctx.panel.get_state
        version = state_version(state("run_version"))
        for run_key in (state(run_state_key(version)), state("run_start") if version else None):
            if run_key in runs:
                return run_key
        return default_run(ctx.dataset, samples, runs)

    @one_look()
    def _current(self, ctx):
        """The review state as a dict, or None when the dataset has no score run. Scores the panel cannot read
        (NaN, text) give ``{"runs", "summary", "gt", "error", "stale_run"}`` only.

        The threshold: the slider of this run on this view (:func:`threshold_state_key`); where its starting
        value comes from (:func:`threshold_source`) is said in ``threshold_label``, or "set by hand" once the
        slider holds another value."""
        from ood_core.errors import OODInputError

        dataset = ctx.dataset
        runs = reviewable_runs(dataset)
        if not runs:
            return None
        samples = self._samples(ctx)
        summary = review_data.run_summary(dataset, self._run_key(ctx, runs, samples))
        run_key, patches = summary["run_key"], summary["patches_field"]
        gt = ctx.panel.get_state("gt_field")
        gt = gt if gt in review_data.boolean_fields(dataset, patches) else None
        stale = stale_run_message(ctx.panel.get_state, runs)
        try:  # a patches view of the run's objects: the objects it shows (none shown: said, never raised)
            scope = request_memo(ctx, ("scope", patches), lambda: self._scope(ctx, patches))
            samples = scope["samples"]
            read = request_memo(ctx, ("scores", view_key(samples), summary["score_field"], gt, patches),
                                lambda: review_data.view_scores(samples, summary["score_field"], gt, patches))
        except OODInputError as e:  # e.g. NaN or text in the score field: said in the panel, never raised
            return {"runs": runs, "summary": summary, "gt": gt, "error": str(e), "stale_run": stale}
        scores, is_positive = read["scores"], read["is_positive"]
        sig = view_signature(samples)
        version = state_version(ctx.panel.get_state(version_key(run_key, sig)))
        preset, old_preset = applied_preset(ctx.panel.get_state(preset_key(run_key, sig)) if version else None,
                                            summary["timestamp"])
        start, label = threshold_source(samples, summary, scores, preset)
        base = threshold_state_key(run_key, version, sig, summary["timestamp"] if old_preset else "")
        key = slider_in_use(ctx.panel.get_state, base, summary["timestamp"])
        threshold = pick_threshold(ctx.panel.get_state(key), scores, start)
        if not same_threshold(threshold, start):
            label = "set by hand"
        return {"runs": runs, "samples": samples, "summary": summary, "gt": gt, "scores": scores,
                "is_positive": is_positive, "labelled": read["labelled"], "threshold": threshold, "start": start,
                "threshold_label": label, "slider_key": key, "view_sig": sig, "num_samples": read["num_samples"],
                "stale_run": stale, "slider_base": base, "patches": scope["patches"], "objects": scope["objects"]}

    @staticmethod
    def _ready(ctx, cur):
        """Whether a button may act on ``cur``; else it says why (a warning) and nothing is done: no run, a run
        the App's dropdown holds that was deleted meanwhile, scores the panel cannot read."""
        if cur is None:
            return False
        problem = cur.get("stale_run") or cur.get("error")
        if problem:
            ctx.ops.notify(f"{problem}; nothing was done", variant="warning")
        return not problem

    # ---- events (each one is followed by render)

    @one_look()
    def _follow_view(self, ctx):
        """On a view the panel has not seen last (the App keeps the panel and its state across views and page
        loads), switch to the run that view is sorted by, e.g. an audit's saved view. The App does not take a
        server-side write of a dropdown's value (its input writes its own value back), so the switch is a new
        run dropdown (``run_version``) drawn with that run (``run_start``); a run the user picks afterwards on
        the same view stays, and on other views the last picked run stays."""
        runs = reviewable_runs(ctx.dataset)
        if not runs:
            return
        samples = self._samples(ctx)
        sig = view_signature(samples)
        if ctx.panel.get_state("view_seen") == sig:
            return
        hint = sorted_run(ctx.dataset, samples, runs)
        current = self._run_key(ctx, runs, samples)
        ctx.panel.set_state("view_seen", sig)
        if hint is not None and hint != current:
            ctx.panel.set_state({"run_version": state_version(ctx.panel.get_state("run_version")) + 1,
                                 "run_start": hint})

    def on_load(self, ctx):
        self._follow_view(ctx)

    def on_change_dataset(self, ctx):
        pass  # render re-validates the stored run, ground truth and threshold

    def on_change_view(self, ctx):
        self._follow_view(ctx)  # render reads the new view

    def on_change_selected(self, ctx):
        pass  # the panel shows how many samples are selected

    def on_change_selected_labels(self, ctx):
        pass  # ... and, on an object run, how many objects are selected in the modal

    def on_change_input(self, ctx):
        """Run, ground truth or threshold changed: the App already stored the value. The App stores a slider's
        default as soon as it draws it and calls this: the server notes which threshold and which computation of
        the run that slider stands for (never the slider's value itself), so a slider never moved follows the run
        when it is scored again (:func:`panel_state.slider_in_use`). The render after it shares its review state:
        the note changes nothing the render reads (the slider in use stays the same)."""
        cur = request_memo(ctx, "current", lambda: self._current(ctx))
        if cur is None or cur.get("error") or not len(cur["scores"]):
            return
        value = ctx.panel.get_state(cur["slider_key"])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not same_threshold(value, cur["start"]):
            return  # moved by hand (or not stored yet): nothing to note
        record = slider_record(cur["slider_key"], cur["summary"]["timestamp"], cur["start"])
        if ctx.panel.get_state(drawn_key(cur["slider_base"])) != record:
            ctx.panel.set_state(drawn_key(cur["slider_base"]), record)

    def apply_preset(self, ctx):
        from ood_core.errors import OODInputError

        cur = self._current(ctx)
        if not self._ready(ctx, cur):
            return
        summary = cur["summary"]
        name = ctx.panel.get_state(PRESET_PATH) or "top_fraction"  # inside the presets stack: nested state
        if not isinstance(name, str) or name not in review_data.PRESETS:  # a state of another panel version
            ctx.ops.notify(f"unknown threshold preset {name!r}; pick one of {sorted(review_data.PRESETS)}",
                           variant="warning")
            return
        try:
            value = preset_value(name, ctx.panel.get_state(preset_value_path(name)))
            threshold, sentence = review_data.preset_threshold(cur["samples"], summary, name, value, cur["scores"],
                                                               cur["is_positive"], cur["labelled"])
        except (OODInputError, ValueError) as e:
            ctx.ops.notify(str(e), variant="warning")
            return
        run_key, sig = summary["run_key"], cur["view_sig"]
        version = state_version(ctx.panel.get_state(version_key(run_key, sig))) + 1
        ctx.panel.set_state(preset_key(run_key, sig), {"threshold": threshold, "label": sentence,
                                                       "run": summary["timestamp"]})
        ctx.panel.set_state(version_key(run_key, sig), version)

    def show_flagged(self, ctx):
        from bson import json_util

        cur = self._current(ctx)
        if not self._ready(ctx, cur):
            return
        summary = cur["summary"]
        if run_patches_view(ctx.view, summary["patches_field"]) is not None:  # the user's patches: flagged ones
            view = flagged_patches(cur["patches"], summary["score_field"], cur["threshold"])
            # recognised by _scope() as the patches they come from (json_util: ObjectIds, as below)
            ctx.panel.set_state("flagged_base", json_util.dumps(cur["patches"]._serialize()))
            ctx.panel.set_state("flagged_stages", json_util.dumps(view._serialize()))
            view = with_field_stages(view, ctx.view)
            ctx.ops.set_view(view=view)
            ctx.ops.notify(f"{len(view)} flagged objects, highest score first", variant="info")
            return
        view = review_data.flagged_view(cur["samples"], summary["score_field"], cur["threshold"],
                                        summary["patches_field"])
        # stored without the user's field-hiding stages: _samples() removes them before recognising the view.
        # Extended JSON keeps ObjectIds and dates: a similarity sort caches its pipeline ($in of ObjectIds), and
        # rebuilt from plain strings it would match no sample
        ctx.panel.set_state("flagged_base", json_util.dumps(cur["samples"]._serialize()))
        ctx.panel.set_state("flagged_stages", json_util.dumps(view._serialize()))
        if not is_generated(ctx.view):
            view = with_field_stages(view, ctx.view)
        ctx.ops.set_view(view=view)
        # sample runs read without ground truth hold one score per scored sample: no count over the view needed
        num = review_data.count_flagged(cur["scores"], cur["threshold"]) if not (cur["gt"] or summary[
            "patches_field"]) else len(view)
        ctx.ops.notify(f"{num} flagged samples, highest {summary['score_field']} first", variant="info")

    def save_flags(self, ctx):
        from ood_core.errors import OODInputError

        cur = self._current(ctx)
        if not self._ready(ctx, cur):
            return
        try:  # the panel's own flags run: an audit's (or flag_samples') flags are never replaced
            tag = flag_tag_value(ctx.panel.get_state(FLAG_TAG_PATH), cur["summary"])  # nested in the flags stack
            refuse_tags_the_panel_reads(cur["samples"], cur["summary"], tag)
            out = save_review_flags(cur["samples"], cur["summary"], cur["threshold"], tag)
        except OODInputError as e:  # e.g. an empty view, an existing flag field of another run
            ctx.ops.notify(str(e), variant="warning")
            return
        ctx.ops.reload_dataset()
        ctx.ops.notify(save_flags_message(out, review_data.item_noun(cur["summary"])), variant="success")

    def _review(self, ctx, decision):
        """Tag the App's selection (:func:`panel_selection.review_app_selection`: on an object run the labels
        selected in the modal, else the samples checked in the grid), then clear that selection."""
        from ood_core.errors import OODInputError

        runs = reviewable_runs(ctx.dataset)
        run_key = self._run_key(ctx, runs, self._samples(ctx)) if runs else None
        patches_field = review_data.run_summary(ctx.dataset, run_key)["patches_field"] if run_key else None
        try:
            out = review_app_selection(ctx.dataset, ctx.view, ctx.selected, ctx.selected_labels, patches_field,
                                       decision)
        except OODInputError as e:  # nothing selected, or a selection the current view does not show
            ctx.ops.notify(str(e), variant="warning")
            return
        if out["cleared"] == "labels":
            ctx.ops.clear_selected_labels()
        else:
            ctx.ops.clear_selected_samples()
        ctx.ops.reload_samples()
        ctx.ops.notify(out["message"], variant="success")

    def confirm_selected(self, ctx):
        self._review(ctx, "confirmed")

    def dismiss_selected(self, ctx):
        self._review(ctx, "dismissed")

    # ---- layout

    @one_look()
    def render(self, ctx):
        panel = types.Object()
        # ObjectView, not a vertical GridView: that one stretches every plot to the panel height
        layout = types.ObjectView(
            componentsProps={"gridContainer": {"sx": {"ml": 0, "width": "100%", "pl": 0, "pr": 2}}})
        cur = request_memo(ctx, "current", lambda: self._current(ctx))  # (on_change_input's, after a slider move)
        if cur is None:
            panel.md(
                "### No score run yet\nRun **OOD: score samples** or **OOD: audit dataset** (operator browser, "
                "backtick key) on this dataset; its runs appear here.",
                name="no_runs",
            )
            return types.Property(panel, view=layout)
        self._render_choices(ctx, panel, cur["runs"], cur["summary"], cur["gt"])
        if cur.get("stale_run"):
            panel.md(f"**{cur['stale_run']}**; shown: `{cur['summary']['run_key']}`", name="stale_run")
        if cur.get("error"):  # scores the panel cannot read: what is wrong and the fix, instead of a traceback
            panel.md(f"**Cannot review this run:** {cur['error']}", name="read_error")
            return types.Property(panel, view=layout)
        summary, gt, scores, is_pos, threshold = (cur[k] for k in ("summary", "gt", "scores", "is_positive",
                                                                   "threshold"))
        pos = summary["positive"]
        item = review_data.item_noun(summary)
        if len(scores):  # the slider spans the scores and the threshold it starts at (a stored one may lie outside)
            lo, hi = min(float(scores.min()), cur["start"]), max(float(scores.max()), cur["start"])
            hi = max(hi if hi > lo else lo + 1.0, threshold)
            panel.float(cur["slider_key"], min=lo, max=hi, default=threshold,
                        on_change=self.on_change_input,
                        view=types.SliderView(label="Threshold", value_precision=4, view_multiple_of=(hi - lo) / 200))
        self._render_presets(ctx, panel, summary, gt)
        n_flagged = review_data.count_flagged(scores, threshold)
        source = f" ({cur['threshold_label']})" if len(scores) else ""
        num_view, num_dataset, noun = cur["num_samples"], len(ctx.dataset), "samples"
        if cur["objects"]:  # a patches view of the run's objects: the objects it shows
            num_view, num_dataset, noun = cur["objects"]["shown"], cur["objects"]["total"], "objects"
        view_note = "" if num_view == num_dataset else \
            f" in the current view ({num_view} of {num_dataset} {noun})"
        panel.md(
            f"**{n_flagged}** of {len(scores)} scored {item} flagged{view_note} (`{summary['score_field']}` >= "
            f"{threshold_text(threshold, scores)}{source}; higher = more {pos}). "
            f"{selection_text(ctx.view, ctx.selected, ctx.selected_labels, summary['patches_field'])}.",
            name="flag_count",
        )
        panel.btn("show_flagged", label="Show flagged samples in the grid (highest score first)",
                  variant="contained", on_click=self.show_flagged)
        flags = panel.h_stack(FLAGS_STACK, align_x="left", align_y="center", gap=2)  # state: flags.<input>
        flags.str("flag_tag", default=review_data.default_flag_tag(summary), label="Tag for flags",
                  on_change=self.on_change_input)
        flags.btn("save_flags", label="Save as flags", variant="outlined", on_click=self.save_flags)
        review = panel.h_stack("review", align_x="left", gap=2)
        review.btn("confirm", label="Tag selected: ood_confirmed", variant="outlined", on_click=self.confirm_selected)
        review.btn("dismiss", label="Tag selected: ood_dismissed", variant="outlined", on_click=self.dismiss_selected)
        panel.md(review_counts_text(cur["samples"], summary), name="review_counts")
        self._render_plots(panel, summary, gt, (scores, cur["labelled"]), is_pos, threshold)
        return types.Property(panel, view=layout)

    def _render_choices(self, ctx, panel, runs, summary, gt):
        run_choices = types.DropdownView(label="Score run")
        for key in runs:
            s = review_data.run_summary(ctx.dataset, key)
            level = f", objects of {s['patches_field']}" if s["patches_field"] else ""
            run_choices.add_choice(key, label=f"{key} ({s['kind']}, {s['method']}{level})")
        version = state_version(ctx.panel.get_state("run_version"))
        panel.enum(run_state_key(version), run_choices.values(), default=summary["run_key"], view=run_choices,
                   on_change=self.on_change_input)
        gt_choices = types.DropdownView(label="Ground truth (optional boolean field, True = positive)")
        for name in review_data.boolean_fields(ctx.dataset, summary["patches_field"]):
            gt_choices.add_choice(name, label=name)
        panel.enum("gt_field", gt_choices.values(), default=gt, view=gt_choices, on_change=self.on_change_input)

    def _render_presets(self, ctx, panel, summary, gt):
        names = review_data.available_presets(summary, gt)
        chosen = ctx.panel.get_state(PRESET_PATH)
        chosen = chosen if chosen in names else names[0]
        presets = panel.h_stack(PRESETS_STACK, align_x="left", align_y="center", gap=2)  # state: presets.<input>
        choices = types.DropdownView(label="Set the threshold from a preset")
        for name in names:
            choices.add_choice(name, label=review_data.PRESETS[name][0])
        presets.enum("preset", choices.values(), default=chosen, view=choices, on_change=self.on_change_input)
        _, value_label, default = review_data.PRESETS[chosen]
        presets.float(preset_value_name(chosen), default=default, label=value_label, on_change=self.on_change_input)
        presets.btn("apply_preset", label="Apply to the threshold", variant="outlined", on_click=self.apply_preset)

    def _render_plots(self, panel, summary, gt, scored, is_pos, threshold):
        """``scored``: ``(scores, labelled)``, every scored item and the mask of those with ground truth (the
        metrics and curves cover those, ``is_pos`` is aligned with them)."""
        pos, neg = summary["positive"], summary["negative"]
        scores, labelled = scored
        known = scores[labelled] if gt and labelled is not None else scores
        metrics = review_data.evaluate(known, is_pos, threshold) if gt else None
        if metrics is not None:
            panel.md(review_data.metrics_markdown(metrics, summary, gt, len(scores) - len(known)), name="metrics")
        elif gt:
            panel.md(f"`{gt}` has only one class among the scored items: no metrics." if len(known) else
                     f"`{gt}` has no value on the scored items: no metrics.", name="metrics")

        margin = {"t": 40, "l": 50, "b": 40, "r": 10}
        shapes = [{"type": "line", "x0": threshold, "x1": threshold, "y0": 0, "y1": 1, "yref": "paper",
                   "line": {"color": "#f57c00", "dash": "dash"}}]
        traces = review_data.histogram_traces(scores, is_pos if metrics is not None else None, (pos, neg),
                                              noun=review_data.item_noun(summary), labelled=labelled)
        panel.plot(
            "histogram",
            data=traces,
            layout={"barmode": "overlay", "showlegend": metrics is not None, "shapes": shapes, "margin": margin,
                    "title": {"text": f"{summary['score_field']} (higher = more {pos}; dashed = threshold)"},
                    "xaxis": score_axis(scores, threshold) if len(scores) else {"title": {"text": "score"}},
                    "yaxis": count_axis(traces)},
            config={"displayModeBar": False},
            height=260,
        )
        if metrics is None:
            return
        # one figure with two subplots: plots inside an h_stack fall back to plotly's
        # default 700 px width and widen the whole panel
        roc, pr = review_data.curve_traces(known, is_pos, threshold)
        for trace in pr:
            trace.update(xaxis="x2", yaxis="y2")
        titles = [(0.21, f"ROC (positive = {pos})"), (0.79, f"Precision-recall (positive = {pos})")]
        panel.plot(
            "curves",
            data=roc + pr,
            layout={"showlegend": False, "margin": margin,
                    "annotations": [{"text": t, "x": x, "y": 1.0, "xref": "paper", "yref": "paper",
                                     "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                                     "font": {"size": 14}} for x, t in titles],
                    "xaxis": {"domain": [0, 0.42], "range": [0, 1], "title": {"text": "FPR"}},
                    "yaxis": {"range": [0, 1.02], "title": {"text": "TPR"}},
                    "xaxis2": {"domain": [0.58, 1], "range": [0, 1], "title": {"text": "recall"}},
                    "yaxis2": {"anchor": "x2", "range": [0, 1.02], "title": {"text": "precision"}}},
            config={"displayModeBar": False},
            height=280,
        )
