"""Plotly figures of OOD scores: ROC / precision-recall curves and score histograms.

OOD is the positive class and a higher score means more OOD; a sample is
flagged when ``score >= threshold``. Arrays in, figures out: no FiftyOne.
"""

import logging

import numpy as np

logger = logging.getLogger(__name__)


#: the longest line of a plot's title, in characters: plotly does not wrap titles, so a longer one (a title naming a
#: long field) ran past the edge of the figure; about 600 px of its 17 px font, inside plotly's default 700 px
TITLE_CHARS = 64


def _title(text):
    """The layout title of ``text``: broken with ``<br>`` (plotly's line break; the title's own are kept) into lines
    of at most :data:`TITLE_CHARS` characters, a longer word cut (:func:`ood_core.report.wrap_words`); the margin
    above the plot grows with the lines. A title holding other markup (a tag, an entity such as ``&amp;``) is left
    as written: breaking it could cut the markup in two."""
    import re

    from .report import wrap_words

    parts = str(text).split("<br>")
    markup = re.search(r"<|&#?\w+;", "".join(parts))
    if markup or (len(parts) == 1 and len(parts[0]) <= TITLE_CHARS):
        return {"text": str(text)}
    lines = [line for part in parts for line in wrap_words(part, TITLE_CHARS)]
    if len(lines) == 1:
        return {"text": lines[0]}
    # set on top of the plot area, the top margin grown to hold it (plotly centres a title in the default margin:
    # the first of several lines fell above the figure); the gap leaves room for the subplots' titles
    return {"text": "<br>".join(lines), "automargin": True, "yref": "paper", "y": 1, "yanchor": "bottom",
            "pad": {"b": 30}}


def _plot_inputs(scores, is_ood, both_classes=True):
    from .metrics import validate_scores

    return validate_scores(scores, is_ood, both_classes=both_classes)


def _is_finite_number(value):
    try:
        return not isinstance(value, (bool, str)) and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def plot_roc_pr(scores, is_ood, *, title=None):
    """ROC and precision-recall curves (OOD = positive class, higher score = more OOD) as a plotly figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    from sklearn.metrics import precision_recall_curve, roc_curve

    from .metrics import ood_metrics

    scores, is_ood = _plot_inputs(scores, is_ood)
    m = ood_metrics(scores, is_ood)
    fpr, tpr, _ = roc_curve(is_ood, scores)
    precision, recall, _ = precision_recall_curve(is_ood, scores)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"ROC (AUROC {m['auroc']:.3f})", f"Precision-recall, OOD positive (AUPR-OUT {m['aupr_out']:.3f})"))
    fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "gray"},
                             name="chance", showlegend=False), row=1, col=1)
    fig.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name="PR"), row=1, col=2)
    fig.update_xaxes(title_text="false positive rate (ID flagged)", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="true positive rate (OOD flagged)", range=[0, 1.02], row=1, col=1)
    fig.update_xaxes(title_text="recall (OOD flagged)", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title_text="precision", range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=_title(title or f"{m['num_ood']} OOD vs {m['num_id']} ID samples; "
                                   f"FPR@95%ID-accepted {100 * m['fpr95']:.1f}%"), showlegend=False)
    return fig


def plot_score_histogram(scores, is_ood, *, threshold=None, nbins=50, title=None):
    """Overlaid score histograms of ID and OOD samples (either may be empty, e.g. in-distribution samples only);
    optional threshold line (flag = score >= threshold)."""
    import plotly.graph_objects as go

    from .errors import OODInputError
    from .validation import check_positive_int

    scores, is_ood = _plot_inputs(scores, is_ood, both_classes=False)
    nbins = check_positive_int(nbins, "nbins")
    if threshold is not None and not _is_finite_number(threshold):
        raise OODInputError(f"threshold={threshold!r} is not a number; pass a finite score (or None for no line)")
    bins = _shared_bins(scores, nbins)
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=scores[~is_ood], name=f"ID ({int((~is_ood).sum())})", opacity=0.6, xbins=bins))
    fig.add_trace(go.Histogram(x=scores[is_ood], name=f"OOD ({int(is_ood.sum())})", opacity=0.6, xbins=bins))
    fig.update_layout(barmode="overlay", xaxis_title="OOD score (higher = more OOD)", yaxis_title="samples",
                      title=_title(title or "Score distribution"))
    if threshold is not None:
        fig.add_vline(x=float(threshold), line_dash="dash", line_color="red",
                      annotation_text=f"threshold {float(threshold):.4g} (flag if score >= threshold)")
    return fig


def _shared_bins(scores, nbins):
    """The bins both histograms share: ``nbins`` equal bins from the lowest to the highest score (a single value:
    the unit range around it, as numpy's), each at least a few float steps wide. Computed, not listed: numpy's
    edges refused scores closer together than ``nbins`` float steps (e.g. 0.3 and 0.1 + 0.2) and held an array of
    ``nbins`` edges in memory."""
    lo, hi = float(scores.min()), float(scores.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    size = hi / nbins - lo / nbins  # divided first: hi - lo of extreme scores overflows
    size = max(size, 4 * float(np.spacing(max(abs(lo), abs(hi)))))
    return {"start": lo, "end": hi, "size": size}


def save_figure(fig, path, *, include_plotlyjs=True):
    """Write ``fig`` as standalone HTML, plus PNG when kaleido is installed.

    ``path`` may end with ``.html``, ``.png`` or nothing; both files share its
    stem. HTML embeds plotly.js by default (works offline). The file ``path``
    names is replaced; the other one only when an earlier ``save_figure`` wrote
    it (a file of the user's there is refused before anything is written).
    Saves into one folder take turns; what a killed one left beside these
    files is put right first (:func:`recover_figures`). Returns ``{"html": path, "png": path or None}``.
    """
    import os

    from .errors import OODInputError

    if not hasattr(fig, "to_html"):
        raise OODInputError(f"fig is a {type(fig).__name__}, not a plotly figure; pass one of the figures the plot "
                            "functions return (e.g. ood.plot_roc_pr(scores, is_ood))")
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip() or os.path.isdir(path):
        raise OODInputError(f"path={path!r} is not a file path; pass the file to write, e.g. 'plots/roc.html' (a "
                            "PNG beside it when kaleido is installed)")
    if not (isinstance(include_plotlyjs, bool) or include_plotlyjs in ("cdn", "directory", "require")
            or (isinstance(include_plotlyjs, str) and include_plotlyjs.endswith(".js"))):
        raise OODInputError(f"include_plotlyjs={include_plotlyjs!r} is not valid; pass True (embedded, works "
                            "offline), False, 'cdn', 'directory', 'require' or a path to plotly.js")
    stem, ext = os.path.splitext(str(path))
    if ext.lower() not in (".html", ".htm", ".png", ""):
        stem, ext = str(path), ""
    html, png = (str(path) if ext.lower() in (".html", ".htm") else stem + ".html"), stem + ".png"
    try:
        import kaleido  # noqa: F401
    except ImportError:
        png = None
    from .publish import folder_lock, writable_folder

    writable_folder(os.path.dirname(os.path.abspath(stem)), "path", str(path))
    page = _HTML_MARK + fig.to_html(include_plotlyjs=include_plotlyjs)  # rendered before any file is touched
    folder = os.path.dirname(os.path.abspath(stem))
    with folder_lock(folder, f"path={path!r}: another process has been saving a figure into {folder!r} for 120 s; "
                             "wait for it to finish, or pass a path in another folder") as held:
        return _save(fig, path, ext, html, png, page, held)


def _save(fig, path, ext, html, png, page, held):
    """:func:`save_figure`'s files, written while ``held`` (saves into the folder take turns): what a killed save
    left beside them is put right first (:func:`recover_figures`)."""
    import os

    from .errors import OODInputError

    if held:
        recover_figures(html, os.path.splitext(html)[0] + ".png")  # a PNG of a save with kaleido too
    for written, ours in ((html, _ours_html), (png, _ours_png)):
        if written and written != str(path) and os.path.exists(written) and not ours(written):
            raise OODInputError(f"{written!r} exists and was not written by save_figure; it is never replaced "
                                f"(save_figure writes {html!r} beside a PNG). Pass another path")
    _write_whole(html, str(path), _ours_html, lambda tmp: _write_text(tmp, page))
    if png is None:
        # a PNG asked for by name is worth a warning; otherwise it is the documented default
        (logger.warning if ext.lower() == ".png" else logger.info)(
            "kaleido is not installed: wrote %s only, no PNG (pip install kaleido for PNG)", html)
    else:
        _write_whole(png, str(path), _ours_png, lambda tmp: (fig.write_image(tmp, format="png"), _mark_png(tmp)))
    return {"html": html, "png": png}


#: the kind named in the claims of save_figure's staging folders (:func:`ood_core.publish.temporary_beside`)
STAGED_KIND = "figure"


def recover_figures(html, png=None):
    """Put right what a ``save_figure`` killed half-way left beside its files ``html`` / ``png``
    (:func:`ood_core.publish.recover_beside`): the earlier figure, marked as save_figure's, back in place when none
    is there; earlier figures aside deleted once a marked one is in place; staging folders deleted only when they
    are provably save_figure's (claimed, empty, or holding a marked figure). A file of the user's under any of those
    names stays. Call it only while no save into the folder runs (``save_figure`` holds the folder's lock)."""
    from .publish import recover_beside

    done = {"restored": [], "removed": []}
    for target, ours in ((html, _ours_html), (png, _ours_png)):
        if target:
            recover_beside(target, lambda p, ours=ours: _safely(ours, p), done=done, kind=STAGED_KIND)
    return done


def _safely(ours, path):
    try:
        return ours(path)
    except OSError:
        return False


def _write_text(path, text):
    with open(path, "x", encoding="utf-8") as f:  # a new file (the temporary one): never another's, never a link
        f.write(text)


def _write_whole(target, named, ours, write):
    """Write ``target`` into a temporary file beside it, then put it in place: an interrupted write leaves the
    earlier file whole. The file the caller ``named`` is replaced; the sibling only when it is ours
    (:func:`ood_core.publish.publish_file`: not even one that appears meanwhile). The temporary file lies in a
    private folder made for this call (:func:`ood_core.publish.temporary_beside`): no file of the user's is
    written over or removed, and no link followed."""
    import os

    from .publish import publish_file, temporary_beside

    with temporary_beside(target, kind=STAGED_KIND) as tmp:
        write(tmp)
        if target == named:
            os.replace(tmp, target)
        else:
            publish_file(tmp, target, ours, f"{target!r} appeared while save_figure ran and was not written by "
                                            "save_figure; it is never replaced. Pass another path")


_HTML_MARK = "<!-- written by fiftyone-ood save_figure -->\n"
_PNG_MARK = ("Software", "fiftyone-ood save_figure")


def _ours_html(path):
    with open(path, "rb") as f:
        return f.read(len(_HTML_MARK)) == _HTML_MARK.encode()


def _ours_png(path):
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.info.get(_PNG_MARK[0]) == _PNG_MARK[1]
    except OSError:
        return False


def _mark_png(path):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(*_PNG_MARK)
    with Image.open(path) as img:
        img.load()
        img.save(path, pnginfo=info)
