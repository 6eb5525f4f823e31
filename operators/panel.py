"""Panel: the curator's review loop over a fiftyone-ood score run ("OOD review").

Pick a score run, (optionally) a boolean ground-truth field, look at the score
histogram, the metrics and the ROC / PR curves, move the threshold, open the
flagged samples in the grid (highest score first) and record review decisions
as sample tags.

Conventions (the same as everywhere in this package): scores are **higher =
more suspicious**; a sample is **flagged** when ``score >= threshold``; the
ground-truth field is True for the **positive class** (OOD, or "wrong label"
for label-issue runs). The panel reads the whole dataset, not the current
view, so opening the flagged samples in the grid does not change the
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
    """Keys of the sample-level score runs on the dataset (score kinds of the run-kind registry).

    Object-level runs (scores on ``<field>.detections``) are left out: the
    panel reviews samples.
    """
    from ood_core.fo import runs as fo_runs

    keys = []
    for key in fo_runs.list_ood_runs(samples):
        info = fo_runs.get_ood_run_info(samples, key)
        if fo_runs.run_kind(info["kind"]).is_score and not info.get("patches_field") and fo_runs.score_path(info):
            keys.append(key)
    return keys


def run_summary(samples, run_key):
    """``{"run_key", "kind", "score_field", "positive", "negative", "method"}`` of a score run.

    ``score_field`` comes from the run record (:func:`ood_core.fo.runs.score_path`).
    """
    from ood_core.errors import OODInputError
    from ood_core.fo import runs as fo_runs

    info = fo_runs.get_ood_run_info(samples, run_key)
    kind = info.get("kind")
    path = fo_runs.score_path(info)
    if path is None or info.get("patches_field"):
        raise OODInputError(
            f"run {run_key!r} is a {kind!r} run, not a sample-level score run; pick one of "
            f"{score_runs(samples)}"
        )
    positive, negative = fo_runs.run_kind(kind).class_names
    detector = info.get("detector") or {}
    method = detector.get("method") or detector.get("name") or kind
    return {"run_key": run_key, "kind": kind, "score_field": path, "positive": positive,
            "negative": negative, "method": method}


def boolean_fields(samples):
    """Top-level boolean fields usable as ground truth (True = positive class).

    Flag fields written by ``ood.flag_samples`` are left out: they are
    decisions derived from the scores, not ground truth.
    """
    import fiftyone.core.fields as fof

    from ood_core.fo import runs as fo_runs

    dataset = samples._dataset
    flag_fields = set()
    for key in fo_runs.list_ood_runs(samples, kind="flags"):
        flag_fields.update(dataset.get_run_info(key).config.fields or [])
    schema = dataset.get_field_schema(ftype=fof.BooleanField)
    return sorted(name for name in schema if name not in flag_fields)


def read_scores(samples, score_field, gt_field=None):
    """Scores of the samples that have one: ``(ids, scores, is_positive)``.

    ``scores`` is a float array (higher = more suspicious). With ``gt_field``,
    only samples with both a score and a ground-truth value are returned and
    ``is_positive`` is a bool array (True = positive class); else it is None.
    """
    from ood_core.errors import OODInputError

    ids = samples.values("id")
    raw = samples.values(score_field)
    gt = samples.values(gt_field) if gt_field else [False] * len(raw)
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


def flagged_view(samples, score_field, threshold):
    """The samples with ``score >= threshold``, highest score first."""
    from fiftyone import ViewField as F

    return samples.match(F(score_field) >= float(threshold)).sort_by(score_field, reverse=True)


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


def threshold_state_key(run_key):
    """Panel-state key of a run's threshold slider: one slider per run, so switching runs
    never needs a server-side write to the slider's value."""
    return f"threshold_{run_key}"


def pick_threshold(stored, scores):
    """The stored slider value if it lies within the scores' range, else the default (top 5%)."""
    if len(scores) == 0:
        return 0.0
    if isinstance(stored, (int, float)) and not isinstance(stored, bool) \
            and float(scores.min()) <= stored <= float(scores.max()):
        return float(stored)
    return default_threshold(scores)


class OODReviewPanel(foo.Panel):
    """The "OOD review" panel (see the module docstring).

    The App writes every input's value into the panel state itself; the event
    handlers below never write those values back (echoing a value while the
    App holds another one makes the App and the server trade values forever).
    """

    @property
    def config(self):
        return foo.PanelConfig(
            name="ood_review",
            label="OOD review",
            icon="troubleshoot",
            surfaces="grid",
            help_markdown=(
                "Review a fiftyone-ood score run: histogram, metrics against a boolean ground-truth "
                "field, threshold (flag = score >= threshold; higher = more suspicious), open the "
                "flagged samples in the grid and tag selected samples `ood_confirmed` / `ood_dismissed`."
            ),
        )

    def _current(self, ctx):
        """``(summary, gt_field, scores, is_positive, threshold)`` from the panel state.

        ``summary`` is None when the dataset has no score run.
        """
        dataset = ctx.dataset
        runs = score_runs(dataset)
        if not runs:
            return None, None, None, None, None
        run_key = ctx.panel.get_state("run_key")
        run_key = run_key if run_key in runs else runs[0]
        gt = ctx.panel.get_state("gt_field")
        gt = gt if gt in boolean_fields(dataset) else None
        summary = run_summary(dataset, run_key)
        _, scores, is_positive = read_scores(dataset, summary["score_field"], gt)
        threshold = pick_threshold(ctx.panel.get_state(threshold_state_key(run_key)), scores)
        return summary, gt, scores, is_positive, threshold

    # ---- events (each one is followed by render)

    def on_load(self, ctx):
        pass

    def on_change_dataset(self, ctx):
        pass  # render re-validates the stored run, ground truth and threshold

    def on_change_selected(self, ctx):
        pass  # the panel shows how many samples are selected

    def on_change_input(self, ctx):
        pass  # run, ground truth or threshold changed: the App already stored the value

    def show_flagged(self, ctx):
        summary, _, _, _, threshold = self._current(ctx)
        if summary is None:
            return
        view = flagged_view(ctx.dataset, summary["score_field"], threshold)
        ctx.ops.set_view(view=view)
        ctx.ops.notify(f"{len(view)} flagged samples, highest {summary['score_field']} first", variant="info")

    def _review(self, ctx, decision):
        if not ctx.selected:
            ctx.ops.notify("Select samples in the grid first (checkbox on each sample)", variant="warning")
            return
        out = review_samples(ctx.dataset, ctx.selected, decision)
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
        summary, gt, scores, is_pos, threshold = self._current(ctx)
        if summary is None:
            panel.md(
                "### No score run yet\nRun **OOD: score samples** (operator browser, backtick key) on this "
                "dataset; its runs appear here.",
                name="no_runs",
            )
            return types.Property(panel, view=layout)

        run_choices = types.DropdownView(label="Score run")
        for key in score_runs(ctx.dataset):
            s = run_summary(ctx.dataset, key)
            run_choices.add_choice(key, label=f"{key} ({s['kind']}, {s['method']})")
        panel.enum("run_key", run_choices.values(), default=summary["run_key"], view=run_choices,
                   on_change=self.on_change_input)

        gt_choices = types.DropdownView(label="Ground truth (optional boolean field, True = positive)")
        for name in boolean_fields(ctx.dataset):
            gt_choices.add_choice(name, label=name)
        panel.enum("gt_field", gt_choices.values(), default=gt, view=gt_choices, on_change=self.on_change_input)

        pos, neg = summary["positive"], summary["negative"]
        if len(scores):
            lo, hi = float(scores.min()), float(scores.max())
            hi = hi if hi > lo else lo + 1.0
            panel.float(threshold_state_key(summary["run_key"]), min=lo, max=hi, default=threshold,
                        on_change=self.on_change_input,
                        view=types.SliderView(label="Threshold", value_precision=4, view_multiple_of=(hi - lo) / 200))
        n_flagged = count_flagged(scores, threshold)
        panel.md(
            f"**{n_flagged}** of {len(scores)} scored samples flagged (`{summary['score_field']}` >= "
            f"{threshold:.4f}; higher = more {pos}). {len(ctx.selected or [])} sample(s) selected in the grid.",
            name="flag_count",
        )

        panel.btn("show_flagged", label="Show flagged samples in the grid (highest score first)",
                  variant="contained", on_click=self.show_flagged)
        review = panel.h_stack("review", align_x="left", gap=2)
        review.btn("confirm", label="Tag selected: ood_confirmed", variant="outlined", on_click=self.confirm_selected)
        review.btn("dismiss", label="Tag selected: ood_dismissed", variant="outlined", on_click=self.dismiss_selected)

        metrics = evaluate(scores, is_pos, threshold) if gt else None
        if metrics is not None:
            panel.md(metrics_markdown(metrics, summary, gt), name="metrics")
        elif gt:
            panel.md(f"`{gt}` has only one class among the scored samples: no metrics.", name="metrics")

        margin = {"t": 40, "l": 50, "b": 40, "r": 10}
        shapes = [{"type": "line", "x0": threshold, "x1": threshold, "y0": 0, "y1": 1, "yref": "paper",
                   "line": {"color": "#f57c00", "dash": "dash"}}]
        panel.plot(
            "histogram",
            data=histogram_traces(scores, is_pos if metrics is not None else None, (pos, neg)),
            layout={"barmode": "overlay", "showlegend": metrics is not None, "shapes": shapes, "margin": margin,
                    "title": {"text": f"{summary['score_field']} (higher = more {pos}; dashed = threshold)"},
                    "xaxis": {"title": {"text": "score"}}, "yaxis": {"title": {"text": "samples"}}},
            config={"displayModeBar": False},
            height=260,
        )
        if metrics is not None:
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
        return types.Property(panel, view=layout)
