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
import numpy as np

#: Review decision -> sample tag it adds (the other decision's tag is removed).
REVIEW_TAGS = {"confirmed": "ood_confirmed", "dismissed": "ood_dismissed"}

#: Fraction of samples flagged by the default threshold (top 5% of scores).
DEFAULT_TOP_FRACTION = 0.05

_HIST_BINS = 40
_MAX_CURVE_POINTS = 400


# --------------------------------------------------------------------------- data (no App needed)


def score_runs(samples):
    """Keys of the score runs on the dataset (score kinds of the run-kind registry), sample- or object-level."""
    from ood_core.fo import runs as fo_runs

    keys = []
    for key in fo_runs.list_ood_runs(samples):
        info = fo_runs.get_ood_run_info(samples, key)
        if fo_runs.run_kind(info["kind"]).is_score and fo_runs.score_path(info):
            keys.append(key)
    return keys


def run_summary(samples, run_key):
    """``{"run_key", "kind", "score_field", "patches_field", "positive", "negative", "method",
    "reference_tag", "calibration"}`` of a score run.

    ``score_field`` comes from the run record (:func:`ood_core.fo.runs.score_path`);
    for object runs it is ``<patches_field>.detections.<score>``.
    """
    from ood_core.errors import OODInputError
    from ood_core.fo import runs as fo_runs

    info = fo_runs.get_ood_run_info(samples, run_key)
    kind = info.get("kind")
    path = fo_runs.score_path(info)
    if path is None:
        raise OODInputError(
            f"run {run_key!r} is a {kind!r} run, not a score run; pick one of {score_runs(samples)}"
        )
    positive, negative = fo_runs.run_kind(kind).class_names
    detector = info.get("detector") or {}
    method = detector.get("method") or detector.get("name") or kind
    return {"run_key": run_key, "kind": kind, "score_field": path, "patches_field": info.get("patches_field"),
            "positive": positive, "negative": negative, "method": method,
            "reference_tag": (info.get("reference") or {}).get("tag"),
            "calibration": info.get("calibration") or None}


def boolean_fields(samples, patches_field=None):
    """Boolean fields usable as ground truth (True = positive class).

    Sample-level runs: top-level boolean fields. Object-level runs
    (``patches_field``): boolean attributes of the objects
    (``<patches_field>.detections.<attr>``). Flag fields written by
    ``ood.flag_samples`` are left out: they are decisions derived from the
    scores, not ground truth.
    """
    import fiftyone.core.fields as fof

    from ood_core.fo import runs as fo_runs

    dataset = samples._dataset
    flag_fields = set()
    for key in fo_runs.list_ood_runs(samples, kind="flags"):
        flag_fields.update(dataset.get_run_info(key).config.fields or [])
    if patches_field:
        prefix = f"{patches_field}.detections"
        # declared attributes, plus dynamic ones that nobody declared with add_dynamic_sample_fields()
        schema = dict(dataset.get_field_schema(flat=True))
        schema.update(dataset.get_dynamic_field_schema() or {})
        names = [name for name, f in schema.items() if isinstance(f, fof.BooleanField)
                 and name.startswith(prefix + ".") and name.count(".") == 2]
    else:
        names = list(dataset.get_field_schema(ftype=fof.BooleanField))
    return sorted(name for name in names if name not in flag_fields)


def read_scores(samples, score_field, gt_field=None, patches_field=None):
    """Scores of the items (samples, or objects of ``patches_field``) that have one: ``(ids, scores, is_positive)``.

    ``scores`` is a float array (higher = more suspicious). With ``gt_field``,
    only items with both a score and a ground-truth value are returned and
    ``is_positive`` is a bool array (True = positive class); else it is None.
    """
    from ood_core.errors import OODInputError
    from ood_core.fo.items import item_ids, item_values

    ids = item_ids(samples, patches_field)
    raw = item_values(samples, score_field, patches_field)
    gt = item_values(samples, gt_field, patches_field) if gt_field else [False] * len(raw)
    keep = [i for i, (s, g) in enumerate(zip(raw, gt)) if s is not None and g is not None]
    bad = [raw[i] for i in keep if not isinstance(raw[i], (int, float, np.number)) or isinstance(raw[i], bool)]
    if bad:
        raise OODInputError(f"field {score_field!r} must hold one number per sample; found {bad[0]!r}")
    scores = np.array([raw[i] for i in keep], dtype=np.float64)
    is_positive = np.array([bool(gt[i]) for i in keep], dtype=bool) if gt_field else None
    return [ids[i] for i in keep], scores, is_positive


def default_threshold(scores):
    """The threshold that flags the top :data:`DEFAULT_TOP_FRACTION` of ``scores`` (ties flagged)."""
    from ood_core import thresholds

    if len(scores) == 0:
        return 0.0
    return float(thresholds.top_fraction(scores, DEFAULT_TOP_FRACTION).threshold)


def count_flagged(scores, threshold):
    """How many scores are flagged: ``score >= threshold``."""
    from ood_core import thresholds

    return int(thresholds.apply_threshold(scores, threshold).sum())


def flagged_view(samples, score_field, threshold, patches_field=None):
    """The samples with ``score >= threshold``, highest score first.

    Object runs: the samples with a flagged object, showing only their flagged
    objects, ordered by their highest object score.
    """
    from fiftyone import ViewField as F

    if patches_field:
        attr = score_field.rsplit(".", 1)[1]
        view = samples.filter_labels(patches_field, F(attr) >= float(threshold))
        return view.sort_by(F(f"{patches_field}.detections").map(F(attr)).max(), reverse=True)
    return samples.match(F(score_field) >= float(threshold)).sort_by(score_field, reverse=True)


#: threshold presets: name -> (label, value label, default value)
PRESETS = {
    "top_fraction": ("Top fraction of scores", "fraction flagged", DEFAULT_TOP_FRACTION),
    "percentile": ("Percentile of the trusted samples", "share of trusted samples that pass", 0.95),
    "fpr": ("Target false-positive rate (needs ground truth)", "allowed FPR", 0.05),
    "top_n": ("Top N", "N", 50),
    "pvalue": ("Calibrated p-value", "flag when p-value <=", 0.05),
}


def available_presets(summary, gt_field):
    """The presets that make sense for this run: FPR needs ground truth, p-value needs a calibration."""
    names = ["top_fraction", "percentile", "top_n"]
    if gt_field:
        names.insert(2, "fpr")
    if pvalue_field(summary):
        names.append("pvalue")
    return names


def pvalue_field(summary):
    """The p-value field a calibrated score run records (``calibration``), or None."""
    calibration = summary.get("calibration") or {}
    if not isinstance(calibration, dict):
        return None
    return calibration.get("pvalue_field") or calibration.get("field")


def preset_threshold(samples, summary, preset, value, scores, is_positive=None):
    """The threshold of a preset on the scores of ``samples``: ``(threshold, sentence)``.

    - ``top_fraction`` / ``top_n``: the top ``value`` (fraction / count) of the scores (ties flagged);
    - ``percentile``: ``value`` of the trusted samples (the run's reference tag, else ``trusted``) pass;
    - ``fpr``: at most ``value`` of the negative class flagged (ground truth needed);
    - ``pvalue``: flagged when the calibrated p-value is ``<= value`` (runs with a calibration).
    """
    from ood_core import thresholds
    from ood_core.errors import OODInputError
    from ood_core.fo import inventory

    if len(scores) == 0:
        raise OODInputError("no scored item in the current view: nothing to threshold")
    if preset == "top_fraction":
        return float(thresholds.top_fraction(scores, float(value)).threshold), f"top {100 * float(value):g}%"
    if preset == "top_n":
        n = min(int(value), len(scores))
        return float(thresholds.top_n(scores, n).threshold), f"top {n}"
    if preset == "fpr":
        if is_positive is None:
            raise OODInputError("the FPR preset needs a ground-truth field: choose one above")
        return (float(thresholds.threshold_at_fpr(scores, is_positive, float(value)).threshold),
                f"FPR <= {100 * float(value):g}%")
    if preset == "percentile":
        tag = summary.get("reference_tag") or inventory.default_reference_tag(samples)
        if not tag:
            raise OODInputError("the percentile preset needs trusted samples: tag them 'trusted' (or score the run "
                                "with a reference tag)")
        _, ref, _ = read_scores(samples._dataset.match_tags(tag), summary["score_field"],
                                patches_field=summary.get("patches_field"))
        if len(ref) == 0:
            raise OODInputError(
                f"no '{tag}' sample has a score in {summary['score_field']!r}: score the trusted samples too "
                "(score the whole dataset with reference_tag='trusted')")
        return (float(thresholds.percentile_of_reference(ref, float(value)).threshold),
                f"{100 * float(value):g}% of '{tag}' pass")
    if preset == "pvalue":
        field = pvalue_field(summary)
        if not field:
            raise OODInputError(f"run {summary['run_key']!r} has no calibrated p-values")
        from ood_core.fo.items import item_values

        patches = summary.get("patches_field")
        pairs = zip(item_values(samples, summary["score_field"], patches), item_values(samples, field, patches))
        flagged = [sc for sc, pv in pairs if sc is not None and pv is not None and pv <= float(value)]
        # p-values fall as scores rise: the lowest flagged score is the score threshold
        threshold = float(min(flagged)) if flagged else float(np.nextafter(scores.max(), np.inf))
        return threshold, f"p-value <= {float(value):g}"
    raise OODInputError(f"unknown preset {preset!r}; presets are {sorted(PRESETS)}")


def review_samples(samples, sample_ids, decision):
    """Record a review decision on samples as a tag; returns what changed.

    ``decision`` is ``"confirmed"`` (tag ``ood_confirmed``) or ``"dismissed"``
    (tag ``ood_dismissed``); the opposite decision's tag is removed from the
    same samples, so a sample carries at most one of the two.
    Returns ``{"tag", "num_samples", "num_tagged", "num_untagged"}``.
    """
    from ood_core.errors import OODInputError

    if decision not in REVIEW_TAGS:
        raise OODInputError(f"decision must be one of {sorted(REVIEW_TAGS)}; got {decision!r}")
    tag = REVIEW_TAGS[decision]
    other = next(t for d, t in REVIEW_TAGS.items() if d != decision)
    ids = list(dict.fromkeys(sample_ids or []))
    if not ids:
        return {"tag": tag, "num_samples": 0, "num_tagged": 0, "num_untagged": 0}
    view = samples._dataset.select(ids)
    if len(view) != len(ids):
        raise OODInputError(f"{len(ids) - len(view)} of the selected sample ids are not in this dataset")
    num_tagged = len(view) - view.count_sample_tags().get(tag, 0)
    num_untagged = view.count_sample_tags().get(other, 0)
    view.untag_samples(other)
    view.tag_samples(tag)
    return {"tag": tag, "num_samples": len(ids), "num_tagged": num_tagged, "num_untagged": num_untagged}


def review_counts(samples):
    """``{"confirmed": n, "dismissed": n}``: review tags among ``samples``."""
    counts = samples.count_sample_tags()
    return {decision: int(counts.get(tag, 0)) for decision, tag in REVIEW_TAGS.items()}


def default_flag_tag(summary):
    """The tag "save as flags" suggests: ``label_issue`` for wrong-label runs, else ``ood``."""
    return "label_issue" if summary["kind"] == "label_issues" else "ood"


def save_flags(samples, summary, threshold, tag):
    """Save the panel's threshold as flags on ``samples`` with :func:`ood_core.flag_samples`.

    Writes ``<score>_flag`` (True = ``score >= threshold``), records a
    ``flags`` run and tags the flagged items ``tag`` (re-saving replaces the
    previous flags of this run; tags set by hand are kept). Returns its summary.
    """
    import ood_core as ood

    return ood.flag_samples(samples, summary["run_key"], rule="threshold", value=float(threshold),
                            tag=tag or None, overwrite=True)


def strip_panel_view(view, stored_stages, stored_base):
    """The view to read: the App's view, unless it is the flagged view this panel opened (then its base)."""
    import json

    import fiftyone.core.view as fov

    if not stored_stages or stored_base is None:
        return view
    if _stage_signature(view._serialize()) != _stage_signature(json.loads(stored_stages)):
        return view
    return fov.DatasetView._build(view._dataset, json.loads(stored_base))


def _stage_signature(stages):
    import json

    return json.dumps([(st.get("_cls"), st.get("kwargs")) for st in stages], sort_keys=True, default=str)


def evaluate(scores, is_positive, threshold):
    """Metrics (``ood_core.metrics.ood_metrics``) plus the rates at ``threshold``, or None.

    None when the ground truth has only one class (AUROC is undefined).
    """
    from ood_core import thresholds
    from ood_core.metrics import ood_metrics

    if is_positive is None or len(scores) == 0 or is_positive.all() or not is_positive.any():
        return None
    metrics = ood_metrics(scores, is_positive)
    metrics["at_threshold"] = thresholds.rates_at_threshold(scores, is_positive, threshold)
    return metrics


# --------------------------------------------------------------------------- plots (plotly JSON)


def histogram_traces(scores, is_positive=None, names=("OOD", "ID")):
    """Plotly bar traces of the score histogram (pre-binned, so large datasets stay small).

    Without ground truth: one trace "all samples"; with it, one trace per class
    (``names`` = (positive, negative)) on shared bins.
    """
    if len(scores) == 0:
        return []
    lo, hi = float(scores.min()), float(scores.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, _HIST_BINS + 1)
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    width = float(edges[1] - edges[0])
    groups = [("all samples", scores, "#6c8ebf")] if is_positive is None else [
        (names[1], scores[~is_positive], "#4e9a06"), (names[0], scores[is_positive], "#cc0000")]
    traces = []
    for name, values, color in groups:
        counts, _ = np.histogram(values, bins=edges)
        traces.append({"type": "bar", "name": name, "x": centers, "y": counts.tolist(), "width": width,
                       "opacity": 0.65, "marker": {"color": color}})
    return traces


def _thin(*arrays):
    n = len(arrays[0])
    if n <= _MAX_CURVE_POINTS:
        return [a.tolist() for a in arrays]
    idx = np.unique(np.linspace(0, n - 1, _MAX_CURVE_POINTS).round().astype(int))
    return [a[idx].tolist() for a in arrays]


def curve_traces(scores, is_positive, threshold):
    """ROC and PR curves (positive class = True) with the operating point at ``threshold``.

    Returns ``(roc_traces, pr_traces)`` for plotly.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    from ood_core import thresholds

    fpr, tpr, _ = roc_curve(is_positive, scores)
    precision, recall, _ = precision_recall_curve(is_positive, scores)
    at = thresholds.rates_at_threshold(scores, is_positive, threshold)
    fpr_l, tpr_l = _thin(fpr, tpr)
    rec_l, prec_l = _thin(recall, precision)
    point = {"type": "scatter", "mode": "markers", "name": "threshold", "marker": {"size": 11, "color": "#f57c00"}}
    roc = [{"type": "scatter", "mode": "lines", "name": "ROC", "x": fpr_l, "y": tpr_l},
           {"type": "scatter", "mode": "lines", "name": "chance", "x": [0, 1], "y": [0, 1],
            "line": {"dash": "dot", "color": "#888"}},
           dict(point, x=[at["fpr"]], y=[at["tpr"]])]
    pr = [{"type": "scatter", "mode": "lines", "name": "PR", "x": rec_l, "y": prec_l}]
    if at["precision"] is not None:
        pr.append(dict(point, x=[at["tpr"]], y=[at["precision"]]))
    return roc, pr


# --------------------------------------------------------------------------- text


def metrics_markdown(metrics, summary, gt_field):
    """Short lines that fit a narrow panel: classes, ranking metrics, rates at the threshold."""
    pos, neg = summary["positive"], summary["negative"]
    at = metrics["at_threshold"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    return "\n\n".join([
        f"Positive class: **{pos}** (`{gt_field} == True`, {metrics['num_ood']} samples) vs {neg} "
        f"({metrics['num_id']}); higher score = more {pos}.",
        f"**AUROC {metrics['auroc']:.3f}** · AUPR-IN {metrics['aupr_in']:.3f} · AUPR-OUT "
        f"{metrics['aupr_out']:.3f} · FPR@95%ID-accepted {pct(metrics['fpr95'])}",
        f"At the threshold: TPR {pct(at['tpr'])} of {pos} flagged · FPR {pct(at['fpr'])} of {neg} flagged · "
        f"precision {pct(at['precision'])}",
    ])


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
    return default_threshold(scores)


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
        """The current view of the App (minus the flagged view this panel opened)."""
        view = ctx.view if ctx.view is not None else ctx.dataset.view()
        return strip_panel_view(view, ctx.panel.get_state("flagged_stages"), ctx.panel.get_state("flagged_base"))

    def _current(self, ctx):
        """The review state as a dict, or None when the dataset has no score run."""
        dataset = ctx.dataset
        runs = score_runs(dataset)
        if not runs:
            return None
        samples = self._samples(ctx)
        run_key = ctx.panel.get_state("run_key")
        run_key = run_key if run_key in runs else runs[0]
        summary = run_summary(dataset, run_key)
        patches = summary["patches_field"]
        gt = ctx.panel.get_state("gt_field")
        gt = gt if gt in boolean_fields(dataset, patches) else None
        _, scores, is_positive = read_scores(samples, summary["score_field"], gt, patches)
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
        value = ctx.panel.get_state(f"preset_value_{name}")
        value = PRESETS[name][2] if value is None else value
        try:
            threshold, sentence = preset_threshold(cur["samples"], summary, name, value, cur["scores"],
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
        view = flagged_view(cur["samples"], summary["score_field"], cur["threshold"], summary["patches_field"])
        ctx.panel.set_state("flagged_base", json.dumps(cur["samples"]._serialize(), default=str))
        ctx.panel.set_state("flagged_stages", json.dumps(view._serialize(), default=str))
        ctx.ops.set_view(view=view)
        ctx.ops.notify(f"{len(view)} flagged samples, highest {summary['score_field']} first", variant="info")

    def save_flags(self, ctx):
        cur = self._current(ctx)
        if cur is None:
            return
        tag = ctx.panel.get_state("flag_tag")
        tag = default_flag_tag(cur["summary"]) if tag is None else tag.strip()
        out = save_flags(cur["samples"], cur["summary"], cur["threshold"], tag)
        ctx.ops.reload_dataset()
        ctx.ops.notify(f"saved {out['num_flagged']} flags in '{out['flag_field']}' (run '{out['flag_key']}')"
                       + (f", tagged '{tag}'" if tag else ""), variant="success")

    def _review(self, ctx, decision):
        if not ctx.selected:
            ctx.ops.notify("Select samples in the grid first (checkbox on each sample)", variant="warning")
            return
        out = review_samples(ctx.dataset, ctx.selected, decision)
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
        n_flagged = count_flagged(scores, threshold)
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
        flags.str("flag_tag", default=default_flag_tag(summary), label="Tag for flags",
                  on_change=self.on_change_input)
        flags.btn("save_flags", label="Save as flags", variant="outlined", on_click=self.save_flags)
        review = panel.h_stack("review", align_x="left", gap=2)
        review.btn("confirm", label="Tag selected: ood_confirmed", variant="outlined", on_click=self.confirm_selected)
        review.btn("dismiss", label="Tag selected: ood_dismissed", variant="outlined", on_click=self.dismiss_selected)
        counts = review_counts(cur["samples"])
        panel.md(f"Reviewed in this view: **{counts['confirmed']}** confirmed · **{counts['dismissed']}** "
                 "dismissed", name="review_counts")
        self._render_plots(panel, summary, gt, scores, is_pos, threshold)
        return types.Property(panel, view=layout)

    def _render_choices(self, ctx, panel, summary, gt):
        run_choices = types.DropdownView(label="Score run")
        for key in score_runs(ctx.dataset):
            s = run_summary(ctx.dataset, key)
            level = f", objects of {s['patches_field']}" if s["patches_field"] else ""
            run_choices.add_choice(key, label=f"{key} ({s['kind']}, {s['method']}{level})")
        panel.enum("run_key", run_choices.values(), default=summary["run_key"], view=run_choices,
                   on_change=self.on_change_input)
        gt_choices = types.DropdownView(label="Ground truth (optional boolean field, True = positive)")
        for name in boolean_fields(ctx.dataset, summary["patches_field"]):
            gt_choices.add_choice(name, label=name)
        panel.enum("gt_field", gt_choices.values(), default=gt, view=gt_choices, on_change=self.on_change_input)

    def _render_presets(self, ctx, panel, summary, gt):
        names = available_presets(summary, gt)
        chosen = ctx.panel.get_state("preset")
        chosen = chosen if chosen in names else names[0]
        presets = panel.h_stack("presets", align_x="left", align_y="center", gap=2)
        choices = types.DropdownView(label="Threshold preset")
        for name in names:
            choices.add_choice(name, label=PRESETS[name][0])
        presets.enum("preset", choices.values(), default=chosen, view=choices, on_change=self.on_change_input)
        _, value_label, default = PRESETS[chosen]
        presets.float(f"preset_value_{chosen}", default=default, label=value_label, on_change=self.on_change_input)
        presets.btn("apply_preset", label="Apply preset", variant="outlined", on_click=self.apply_preset)

    def _render_plots(self, panel, summary, gt, scores, is_pos, threshold):
        pos, neg = summary["positive"], summary["negative"]
        metrics = evaluate(scores, is_pos, threshold) if gt else None
        if metrics is not None:
            panel.md(metrics_markdown(metrics, summary, gt), name="metrics")
        elif gt:
            panel.md(f"`{gt}` has only one class among the scored items: no metrics.", name="metrics")

        margin = {"t": 40, "l": 50, "b": 40, "r": 10}
        shapes = [{"type": "line", "x0": threshold, "x1": threshold, "y0": 0, "y1": 1, "yref": "paper",
                   "line": {"color": "#f57c00", "dash": "dash"}}]
        panel.plot(
            "histogram",
            data=histogram_traces(scores, is_pos if metrics is not None else None, (pos, neg)),
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
        roc, pr = curve_traces(scores, is_pos, threshold)
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
