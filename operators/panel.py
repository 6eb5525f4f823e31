"""Panel: the curator's review loop over a fiftyone-ood score run ("OOD review").

Pick a score run (sample- or object-level), (optionally) a boolean
ground-truth field, look at the score histogram, the metrics and the ROC / PR
curves, set the threshold (slider or a preset: percentile of the trusted
samples, target FPR, top N, calibrated p-value when the run has one), open the
flagged samples in the grid (highest score first), save the threshold as flags
(``ood.flag_samples``) and record review decisions as sample tags.

Conventions (the same as everywhere in this package): scores are **higher =
more suspicious**; a sample is **flagged** when ``score >= threshold``; the
ground-truth field is True for the **positive class** (OOD, or "wrong label"
for label-issue runs). The panel reads the App's **current view** (filters,
tags, saved views); the flagged view it opens itself is recognised and
undone for reading, so opening the flagged samples does not change the
histogram or the slider range.

Everything the panel computes lives in small module-level functions that take
a dataset (or view) and plain values, so it is tested without a browser
(``tests/test_panel.py``); the :class:`OODReviewPanel` class only wires them to
App events.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import review as review_data

# --------------------------------------------------------------------------- the panel


def threshold_state_key(run_key, version=0):
    """Panel-state key of a run's threshold slider: one slider per run, so switching runs
    never needs a server-side write to the slider's value. Applying a preset bumps
    ``version``: a new slider whose default is the preset's threshold."""
    return f"threshold_{run_key}" if not version else f"threshold_{run_key}_v{version}"


def pick_threshold(stored, scores, fallback=None):
    """The stored slider value if it lies within the scores' range, else ``fallback``, else the default (top 5%)."""
    if len(scores) == 0:
        return 0.0
    if isinstance(stored, (int, float)) and not isinstance(stored, bool) \
            and float(scores.min()) <= stored <= float(scores.max()):
        return float(stored)
    if fallback is not None:
        return float(fallback)
    return review_data.default_threshold(scores)


class OODReviewPanel(foo.Panel):
    """The "OOD review" panel (see the module docstring).

    The App writes every input's value into the panel state itself; the event
    handlers below never write those values back (echoing a value while the
    App holds another one makes the App and the server trade values forever).
    They write only keys that are no input: the preset applied and the
    slider's version, the flagged view this panel opened.
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
                "samples `ood_confirmed` / `ood_dismissed`."
            ),
        )

    def _samples(self, ctx):
        """The current view of the App (minus the flagged view this panel opened), every field shown; a patches,
        frames or clips view is reviewed as its whole dataset (object runs are reviewed per object anyway)."""
        from ood_core.fo.items import show_all_fields

        view = ctx.view if ctx.view is not None else ctx.dataset.view()
        if view._dataset.name != view._root_dataset.name:
            view = ctx.dataset.view()
        view = show_all_fields(view)
        return review_data.strip_panel_view(view, ctx.panel.get_state("flagged_stages"), ctx.panel.get_state("flagged_base"))

    def _current(self, ctx):
        """The review state as a dict, or None when the dataset has no score run."""
        dataset = ctx.dataset
        runs = review_data.score_runs(dataset)
        if not runs:
            return None
        samples = self._samples(ctx)
        run_key = ctx.panel.get_state("run_key")
        run_key = run_key if run_key in runs else runs[0]
        summary = review_data.run_summary(dataset, run_key)
        patches = summary["patches_field"]
        gt = ctx.panel.get_state("gt_field")
        gt = gt if gt in review_data.boolean_fields(dataset, patches) else None
        _, scores, is_positive = review_data.read_scores(samples, summary["score_field"], gt, patches)
        version = int(ctx.panel.get_state(f"threshold_version_{run_key}") or 0)
        preset = ctx.panel.get_state(f"preset_{run_key}") or {}
        key = threshold_state_key(run_key, version)
        threshold = pick_threshold(ctx.panel.get_state(key), scores, preset.get("threshold") if version else None)
        return {"samples": samples, "summary": summary, "gt": gt, "scores": scores, "is_positive": is_positive,
                "threshold": threshold, "slider_key": key, "preset": preset if version else {}}

    # ---- events (each one is followed by render)

    def on_load(self, ctx):
        pass

    def on_change_dataset(self, ctx):
        pass  # render re-validates the stored run, ground truth and threshold

    def on_change_view(self, ctx):
        pass  # render reads the new view

    def on_change_selected(self, ctx):
        pass  # the panel shows how many samples are selected

    def on_change_input(self, ctx):
        pass  # run, ground truth or threshold changed: the App already stored the value

    def apply_preset(self, ctx):
        from ood_core.errors import OODInputError

        cur = self._current(ctx)
        if cur is None:
            return
        summary = cur["summary"]
        name = ctx.panel.get_state("preset") or "top_fraction"
        if name not in review_data.PRESETS:  # a stale state from another version of the panel
            ctx.ops.notify(f"unknown threshold preset {name!r}; pick one of {sorted(review_data.PRESETS)}",
                           variant="warning")
            return
        value = ctx.panel.get_state(f"preset_value_{name}")
        value = review_data.PRESETS[name][2] if value is None else value
        try:
            threshold, sentence = review_data.preset_threshold(cur["samples"], summary, name, value, cur["scores"],
                                                   cur["is_positive"])
        except (OODInputError, ValueError) as e:
            ctx.ops.notify(str(e), variant="warning")
            return
        run_key = summary["run_key"]
        version = int(ctx.panel.get_state(f"threshold_version_{run_key}") or 0) + 1
        ctx.panel.set_state(f"preset_{run_key}", {"threshold": threshold, "label": sentence})
        ctx.panel.set_state(f"threshold_version_{run_key}", version)

    def show_flagged(self, ctx):
        import json

        cur = self._current(ctx)
        if cur is None:
            return
        summary = cur["summary"]
        view = review_data.flagged_view(cur["samples"], summary["score_field"], cur["threshold"], summary["patches_field"])
        ctx.panel.set_state("flagged_base", json.dumps(cur["samples"]._serialize(), default=str))
        ctx.panel.set_state("flagged_stages", json.dumps(view._serialize(), default=str))
        ctx.ops.set_view(view=view)
        ctx.ops.notify(f"{len(view)} flagged samples, highest {summary['score_field']} first", variant="info")

    def save_flags(self, ctx):
        from ood_core.errors import OODInputError

        cur = self._current(ctx)
        if cur is None:
            return
        tag = ctx.panel.get_state("flag_tag")
        tag = review_data.default_flag_tag(cur["summary"]) if tag is None else tag.strip()
        try:
            out = review_data.save_flags(cur["samples"], cur["summary"], cur["threshold"], tag)
        except OODInputError as e:  # e.g. an empty view, an existing flag field of another run
            ctx.ops.notify(str(e), variant="warning")
            return
        ctx.ops.reload_dataset()
        ctx.ops.notify(f"saved {out['num_flagged']} flags in '{out['flag_field']}' (run '{out['flag_key']}')"
                       + (f", tagged '{tag}'" if tag else ""), variant="success")

    def _review(self, ctx, decision):
        from ood_core.errors import OODInputError

        if not ctx.selected:
            ctx.ops.notify("Select samples in the grid first (checkbox on each sample)", variant="warning")
            return
        try:
            out = review_data.review_samples(ctx.dataset, ctx.selected, decision)
        except OODInputError as e:  # e.g. selected samples deleted meanwhile
            ctx.ops.notify(str(e), variant="warning")
            return
        ctx.ops.clear_selected_samples()
        ctx.ops.reload_samples()
        ctx.ops.notify(f"tagged {out['num_samples']} sample(s) '{out['tag']}'", variant="success")

    def confirm_selected(self, ctx):
        self._review(ctx, "confirmed")

    def dismiss_selected(self, ctx):
        self._review(ctx, "dismissed")

    # ---- layout

    def render(self, ctx):
        panel = types.Object()
        # ObjectView, not a vertical GridView: that one stretches every plot to the panel height
        layout = types.ObjectView(
            componentsProps={"gridContainer": {"sx": {"ml": 0, "width": "100%", "pl": 0, "pr": 2}}})
        cur = self._current(ctx)
        if cur is None:
            panel.md(
                "### No score run yet\nRun **OOD: score samples** or **OOD: audit dataset** (operator browser, "
                "backtick key) on this dataset; its runs appear here.",
                name="no_runs",
            )
            return types.Property(panel, view=layout)
        summary, gt, scores, is_pos, threshold = (cur[k] for k in ("summary", "gt", "scores", "is_positive",
                                                                   "threshold"))
        self._render_choices(ctx, panel, summary, gt)
        pos = summary["positive"]
        item = "objects" if summary["patches_field"] else "samples"
        if len(scores):
            lo, hi = float(scores.min()), float(scores.max())
            hi = max(hi if hi > lo else lo + 1.0, threshold)
            panel.float(cur["slider_key"], min=lo, max=hi, default=threshold,
                        on_change=self.on_change_input,
                        view=types.SliderView(label="Threshold", value_precision=4, view_multiple_of=(hi - lo) / 200))
        self._render_presets(ctx, panel, summary, gt)
        n_flagged = review_data.count_flagged(scores, threshold)
        preset = f" (preset: {cur['preset']['label']})" if cur["preset"].get("label") else ""
        view_note = "" if len(cur["samples"]) == len(ctx.dataset) else \
            f" in the current view ({len(cur['samples'])} of {len(ctx.dataset)} samples)"
        panel.md(
            f"**{n_flagged}** of {len(scores)} scored {item} flagged{view_note} (`{summary['score_field']}` >= "
            f"{threshold:.4f}{preset}; higher = more {pos}). {len(ctx.selected or [])} sample(s) selected in the "
            "grid.",
            name="flag_count",
        )
        panel.btn("show_flagged", label="Show flagged samples in the grid (highest score first)",
                  variant="contained", on_click=self.show_flagged)
        flags = panel.h_stack("flags", align_x="left", align_y="center", gap=2)
        flags.str("flag_tag", default=review_data.default_flag_tag(summary), label="Tag for flags",
                  on_change=self.on_change_input)
        flags.btn("save_flags", label="Save as flags", variant="outlined", on_click=self.save_flags)
        review = panel.h_stack("review", align_x="left", gap=2)
        review.btn("confirm", label="Tag selected: ood_confirmed", variant="outlined", on_click=self.confirm_selected)
        review.btn("dismiss", label="Tag selected: ood_dismissed", variant="outlined", on_click=self.dismiss_selected)
        counts = review_data.review_counts(cur["samples"])
        panel.md(f"Reviewed in this view: **{counts['confirmed']}** confirmed · **{counts['dismissed']}** "
                 "dismissed", name="review_counts")
        self._render_plots(panel, summary, gt, scores, is_pos, threshold)
        return types.Property(panel, view=layout)

    def _render_choices(self, ctx, panel, summary, gt):
        run_choices = types.DropdownView(label="Score run")
        for key in review_data.score_runs(ctx.dataset):
            s = review_data.run_summary(ctx.dataset, key)
            level = f", objects of {s['patches_field']}" if s["patches_field"] else ""
            run_choices.add_choice(key, label=f"{key} ({s['kind']}, {s['method']}{level})")
        panel.enum("run_key", run_choices.values(), default=summary["run_key"], view=run_choices,
                   on_change=self.on_change_input)
        gt_choices = types.DropdownView(label="Ground truth (optional boolean field, True = positive)")
        for name in review_data.boolean_fields(ctx.dataset, summary["patches_field"]):
            gt_choices.add_choice(name, label=name)
        panel.enum("gt_field", gt_choices.values(), default=gt, view=gt_choices, on_change=self.on_change_input)

    def _render_presets(self, ctx, panel, summary, gt):
        names = review_data.available_presets(summary, gt)
        chosen = ctx.panel.get_state("preset")
        chosen = chosen if chosen in names else names[0]
        presets = panel.h_stack("presets", align_x="left", align_y="center", gap=2)
        choices = types.DropdownView(label="Threshold preset")
        for name in names:
            choices.add_choice(name, label=review_data.PRESETS[name][0])
        presets.enum("preset", choices.values(), default=chosen, view=choices, on_change=self.on_change_input)
        _, value_label, default = review_data.PRESETS[chosen]
        presets.float(f"preset_value_{chosen}", default=default, label=value_label, on_change=self.on_change_input)
        presets.btn("apply_preset", label="Apply preset", variant="outlined", on_click=self.apply_preset)

    def _render_plots(self, panel, summary, gt, scores, is_pos, threshold):
        pos, neg = summary["positive"], summary["negative"]
        metrics = review_data.evaluate(scores, is_pos, threshold) if gt else None
        if metrics is not None:
            panel.md(review_data.metrics_markdown(metrics, summary, gt), name="metrics")
        elif gt:
            panel.md(f"`{gt}` has only one class among the scored items: no metrics.", name="metrics")

        margin = {"t": 40, "l": 50, "b": 40, "r": 10}
        shapes = [{"type": "line", "x0": threshold, "x1": threshold, "y0": 0, "y1": 1, "yref": "paper",
                   "line": {"color": "#f57c00", "dash": "dash"}}]
        panel.plot(
            "histogram",
            data=review_data.histogram_traces(scores, is_pos if metrics is not None else None, (pos, neg)),
            layout={"barmode": "overlay", "showlegend": metrics is not None, "shapes": shapes, "margin": margin,
                    "title": {"text": f"{summary['score_field']} (higher = more {pos}; dashed = threshold)"},
                    "xaxis": {"title": {"text": "score"}}, "yaxis": {"title": {"text": "count"}}},
            config={"displayModeBar": False},
            height=260,
        )
        if metrics is None:
            return
        # one figure with two subplots: plots inside an h_stack fall back to plotly's
        # default 700 px width and widen the whole panel
        roc, pr = review_data.curve_traces(scores, is_pos, threshold)
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
