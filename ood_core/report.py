"""A self-contained HTML report from arrays and image files (no FiftyOne, no network).

One file that opens in any browser, offline, and can be mailed: plots are inline
SVG, thumbnails are base64 PNGs, styles are inline. :func:`ood_core.fo.audit.audit`
fills it from a dataset; the building blocks here take plain values, so they are
tested on arrays.

Score convention (stated in every plot): **higher score = more suspicious**; an
item is flagged when ``score >= threshold``.
"""

import base64
import html
import io
import re
import unicodedata

import numpy as np

_CSS = """
/* a word longer than its box (a label or file name without spaces) breaks anywhere rather than run out: set once
   here, every element inherits it (pre sets it back to normal, it scrolls instead) */
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;
color:#222;line-height:1.45;padding:0 16px;overflow-wrap:anywhere}
h1{font-size:26px;margin-bottom:4px}h2{font-size:20px;margin-top:32px;border-bottom:2px solid #f57c00;
padding-bottom:4px}
.muted{color:#666}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 16px;min-width:150px;background:#fafafa}
.card .n{font-size:26px;font-weight:600}.card .what{color:#555;font-size:13px}
table{border-collapse:collapse;margin:8px 0;max-width:100%}td,th{border:1px solid #ddd;padding:4px 10px;
text-align:left;font-size:14px}th{background:#f3f3f3}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.tile{width:150px;border:1px solid #ddd;border-radius:6px;
padding:6px;font-size:12px;background:#fff}.tile img{width:138px;height:138px;object-fit:contain;
image-rendering:pixelated;background:#eee;display:block;margin-bottom:4px}
.tile img[src^='data:image/jpeg']{image-rendering:auto}
.tile .noimage{width:138px;height:138px;background:#eee;margin-bottom:4px;display:flex;align-items:center;
justify-content:center;text-align:center;color:#666;font-style:italic;box-sizing:border-box;padding:6px}
.tile .score{font-weight:600}.tile .suggest{color:#0a6d2c}.tile .flagged{color:#b45309;font-weight:600}
.tile .nolabel{color:#888;font-style:italic}
.tile .id{color:#888;font-size:9px}
pre{background:#f5f5f5;padding:10px;border-radius:6px;overflow-x:auto;font-size:13px;overflow-wrap:normal}
.plots{display:flex;flex-wrap:wrap;gap:18px}
.warning{background:#fff4e5;border-left:4px solid #f57c00;padding:8px 12px;margin:8px 0}
"""


def escape(text):
    return html.escape(str(text), quote=True)


def isolate(text):
    """``text`` (a name a user gave: a dataset, a label) escaped and isolated from the direction of the sentence
    around it: a right-to-left name inside a left-to-right sentence otherwise takes the punctuation and numbers
    after it along (``dataset '<name>', 20 samples`` reads ``dataset '20 ,'<name> samples``), and a direction
    override character in it turns the rest of the sentence around."""
    return f"<bdi>{escape(text)}</bdi>"


#: Unicode's isolate marks (FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE): :func:`isolate_text`'s ``<bdi>`` of
#: plain text
FSI, PDI = "\u2068", "\u2069"
#: bidirectional classes of a character that can turn the text around it: right-to-left letters and the explicit
#: direction controls
_RTL_OR_CONTROL = {"R", "AL", "RLE", "RLO", "RLI", "LRE", "LRO", "LRI", "FSI", "PDF", "PDI"}


def isolate_text(text):
    """:func:`isolate` for plain text (a sentence that goes into markdown, a form or a log as well as into HTML):
    ``text`` between :data:`FSI` and :data:`PDI` when it holds a right-to-left letter or a direction control, else
    unchanged (a left-to-right name cannot take the sentence's numbers along, so it is not marked). Pass a name
    as it is shown, e.g. its ``repr`` (which escapes direction controls). :func:`text_html` turns the marks into
    ``<bdi>``."""
    text = str(text)
    if not any(unicodedata.bidirectional(c) in _RTL_OR_CONTROL for c in text):
        return text
    return f"{FSI}{text}{PDI}"


_ISOLATED = re.compile(f"{FSI}([^{FSI}{PDI}]*){PDI}")


def text_html(text):
    """Plain ``text`` (a sentence for people) as HTML: escaped, and each name :func:`isolate_text` marked in a
    ``<bdi>``."""
    return _ISOLATED.sub(r"<bdi>\1</bdi>", escape(text))


def thumbnail_data_uri(path, size=138):
    """A thumbnail of an image file as a ``data:`` URI, or None if it cannot be shown (:func:`thumbnail`)."""
    return thumbnail(path, size)[0]


def thumbnail(path, size=138):
    """``(data URI, None)``: a thumbnail of the image file at ``path``, at most ``size`` pixels wide and high; or
    ``(None, why)`` when it cannot be shown (the file is missing, too large to decode, or unreadable), in words
    for the tile that stands in for it.

    The smaller of a PNG and a JPEG of it: a colour photo's PNG takes 30-40 KB, its JPEG 5-8 KB (the report is
    one file to mail); a tiny image scaled up pixel by pixel stays a PNG (lossless, and smaller)."""
    from PIL import Image, ImageOps

    from .images import to_rgb

    try:
        with Image.open(path) as img:
            img.draft(img.mode, (size, size))  # a JPEG decodes at 1/2-1/8 scale: a large photo in far less time
            img = ImageOps.exif_transpose(img)
            # as the embeddings see it (ood_core.images.to_rgb: a 16-bit image rescaled, not clipped to white; a
            # transparent one on white, not black); a grey image stays grey (a smaller PNG)
            plain_grey = img.mode == "L" and "transparency" not in img.info
            img = img.copy() if plain_grey else to_rgb(img)
            img.thumbnail((size, size))
            upscaled = max(img.size) < size
            if upscaled:  # tiny images (28 px): upscale so the tile shows them
                scale = size // max(img.size)
                img = img.resize((img.size[0] * scale, img.size[1] * scale), Image.NEAREST)
            encoded = [("png", _encoded(img, "PNG", optimize=True))]
            if not upscaled:
                encoded.append(("jpeg", _encoded(img, "JPEG", quality=85)))
    except FileNotFoundError:
        return None, "image file not found"
    except Image.DecompressionBombError:  # Pillow refuses to decode it (it would take gigabytes of memory)
        return None, f"image too large to show (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels)"
    except Exception:  # noqa: BLE001 - Pillow's decoders raise more than OSError on a broken file (SyntaxError,
        # struct.error, IndexError, ...); a thumbnail is never worth stopping the report for
        return None, "image unreadable"
    kind, data = min(encoded, key=lambda e: len(e[1]))
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii"), None


def _encoded(img, fmt, **options):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def histogram_svg(scores, *, threshold=None, title="", is_positive=None, names=("positive", "negative"),
                  bins=40, width=540, height=240):
    """An inline SVG histogram of ``scores`` with the threshold as a dashed line.

    With ``is_positive`` (bool array), the two classes are drawn on shared bins
    (``names`` = (positive, negative)). Scores that are not finite (NaN, infinite) have no place on the axis: they
    are left out and counted in the title.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    finite = np.isfinite(scores)
    if not finite.all():
        bad = int((~finite).sum())
        title = f"{title} ({bad:,} score{'s' if bad > 1 else ''} not drawn: NaN or infinite)".strip()
        scores = scores[finite]
        is_positive = None if is_positive is None else np.asarray(is_positive, bool).ravel()[finite]
    if scores.size == 0:
        return f"<p class='muted'>{escape(title)}: no scores.</p>"
    lo, hi = float(scores.min()), float(scores.max())
    if threshold is not None and np.isfinite(threshold):  # the axis holds the threshold, above or below the scores
        lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    groups = [("all", scores, "#6c8ebf")] if is_positive is None else [
        (names[1], scores[~np.asarray(is_positive, bool)], "#4e9a06"),
        (names[0], scores[np.asarray(is_positive, bool)], "#cc0000")]
    counts = [np.histogram(v, bins=edges)[0] for _, v, _ in groups]
    top = max(1, max(int(c.max()) for c in counts))
    title_lines = wrap_words(title, max(20, (width - 8) // 7))  # about 7 px per character of the 13 px bold title
    # the legend between the title and the plot, a long name (a trusted tag) wrapped: inside the plot it ran out
    # of the figure and covered the threshold's label
    legend = [] if is_positive is None else [
        (i, line_no, line) for i, (name, _, _) in enumerate(groups)
        for line_no, line in enumerate(wrap_words(name, max(12, (width - 60) // _CHAR_PX)))]
    left, bottom, right = 44, 34, 24
    head = 12 + 16 * len(title_lines) + (14 * len(legend) + 4 if legend else 0)
    height += 16 * (len(title_lines) - 1) + (14 * len(legend) + 4 if legend else 0)
    pw, ph = width - left - right, height - bottom - head

    def x(v):
        return left + (v - lo) / (hi - lo) * pw

    def y(c):
        return head + ph - c / top * ph

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"role='img' aria-label='{escape(title)}'>",
             *(f"<text x='4' y='{16 + 16 * i}' font-size='13' font-weight='600'>{escape(line)}</text>"
               for i, line in enumerate(title_lines))]
    bar_w = pw / bins
    for g, ((name, _, color), c) in enumerate(zip(groups, counts)):
        for i, n in enumerate(c):
            if n:
                parts.append(f"<rect x='{x(edges[i]):.1f}' y='{y(n):.1f}' width='{max(bar_w - 1, 1):.1f}' "
                             f"height='{head + ph - y(n):.1f}' {_bar_style(g, color)}/>")
    parts.append(f"<line x1='{left}' y1='{head + ph}' x2='{left + pw}' y2='{head + ph}' stroke='#444'/>")
    parts.append(f"<line x1='{left}' y1='{head}' x2='{left}' y2='{head + ph}' stroke='#444'/>")
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f"<text x='{x(v):.1f}' y='{height - 18}' font-size='11' text-anchor='middle'>{v:.3g}</text>")
    parts.append(f"<text x='{left - 6}' y='{head + 4}' font-size='11' text-anchor='end'>{top}</text>")
    parts.append(f"<text x='{left - 6}' y='{head + ph}' font-size='11' text-anchor='end'>0</text>")
    parts.append(f"<text x='12' y='{head + ph / 2:.1f}' font-size='11' text-anchor='middle' "
                 f"transform='rotate(-90 12 {head + ph / 2:.1f})'>count</text>")
    parts.append(f"<text x='{left + pw / 2:.1f}' y='{height - 3}' font-size='11' text-anchor='middle'>"
                 "score (higher = more suspicious)</text>")
    if threshold is not None and np.isfinite(threshold):
        tx = x(float(threshold))
        parts.append(f"<line x1='{tx:.1f}' y1='{head}' x2='{tx:.1f}' y2='{head + ph}' stroke='#f57c00' "
                     "stroke-width='2' stroke-dasharray='5,4'/>")
        label = f"threshold {float(threshold):.3g}"
        # right of its line, or left of it where it would run out of the plot (it was pushed back over the line)
        beside = (f"x='{tx + 4:.1f}'" if tx + 4 + len(label) * _CHAR_PX <= left + pw
                  else f"x='{tx - 4:.1f}' text-anchor='end'")
        parts.append(f"<text {beside} y='{head + 12}' font-size='11' "
                     # a white halo keeps the label readable where it crosses the bars
                     f"fill='#f57c00' stroke='#fff' stroke-width='3' paint-order='stroke'>{label}</text>")
    legend_top = 12 + 16 * len(title_lines) - 10  # the legend's first line, under the title
    for row, (i, line_no, line) in enumerate(legend):
        swatch = "" if line_no else (f"<rect x='8' y='{legend_top + 14 * row + 2}' width='10' height='10' "
                                     f"{_bar_style(i, groups[i][2])}/>")
        parts.append(f"{swatch}<text x='23' y='{legend_top + 14 * row + 11}' font-size='11'>{escape(line)}</text>")
    parts.append("</svg>")
    return "".join(parts)


#: the width of a character of the figures' 11 px texts, a little above the average (so estimates stay inside)
_CHAR_PX = 7


def _bar_style(group, color):
    """The first group's bars filled, the second's outlined: where they overlap both stay readable (two filled,
    translucent colours mixed into a third that no legend names)."""
    if group == 0:
        return f"fill='{color}' fill-opacity='0.55'"
    return f"fill='none' stroke='{color}' stroke-width='1.5'"


def wrap_words(text, max_chars):
    """``text`` in lines of at most ``max_chars`` characters, broken at spaces; a longer word (a field or label name
    without spaces) is cut into pieces of ``max_chars``, each on a line of its own, so all of it is shown."""
    lines = []
    for word in str(text).split():
        pieces = [word[i:i + max_chars] for i in range(0, len(word), max_chars)]
        if lines and len(lines[-1]) + 1 + len(pieces[0]) <= max_chars:
            lines[-1] += " " + pieces.pop(0)
        lines += pieces
    return lines or [""]


def cards(items):
    """Big numbers: ``[(number, what)]``."""
    return "<div class='cards'>" + "".join(
        f"<div class='card'><div class='n'>{escape(n)}</div><div class='what'>{text_html(what)}</div></div>"
        for n, what in items) + "</div>"


def table(header, rows):
    """A table of plain-text cells; names in them marked with :func:`isolate_text` are shown in ``<bdi>``."""
    head = "".join(f"<th>{text_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{text_html(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def gallery(tiles, threshold=None):
    """Thumbnails with captions. ``tiles``: dicts with ``image`` (data URI or None), ``no_image`` (why there is
    none, :func:`thumbnail`), ``score``,
    ``lines`` (caption lines) and ``id`` (plain text; names marked with :func:`isolate_text` shown in ``<bdi>``),
    in the order shown (the galleries: highest score first).

    Scores get the fewest significant digits (3 at least, :func:`score_digits`) that print every two
    different scores of the gallery, and each of them and ``threshold``, differently (values apart only by float
    rounding, :data:`SAME_SCORE_RTOL`, may print alike); with ``threshold`` a line above the tiles names it with
    the same digits (flagged = ``score >= threshold``)."""
    digits = score_digits([t["score"] for t in tiles], threshold)
    out = []
    for t in tiles:
        # no thumbnail: a box of the thumbnail's size in its place (the tiles of a row keep one height) that says why
        img = f"<img src='{t['image']}' alt='sample {escape(t['id'])}'>" if t.get("image") else \
            f"<div class='noimage'>{escape(t.get('no_image') or 'image unreadable')}</div>"
        # caption lines and id are plain text: names in them (labels, file names) marked with isolate_text
        lines = "".join(f"<div class='{escape(cls)}'>{text_html(text)}</div>" for cls, text in t.get("lines", ()))
        out.append(f"<div class='tile'>{img}<div class='score'>score {t['score']:.{digits}g}</div>"
                   f"{_below(t['score'], threshold, digits)}{lines}<div class='id'>{text_html(t['id'])}</div></div>")
    note = "" if threshold is None else (f"<p class='muted'>Flagged when score &gt;= {float(threshold):.{digits}g} "
                                         "(each tile says whether it is flagged).</p>")
    return note + "<div class='gallery'>" + "".join(out) + "</div>"


def _below(score, threshold, digits):
    """A line for a score that prints as the threshold but lies below it (by float rounding,
    :data:`SAME_SCORE_RTOL`), else ''."""
    if threshold is None or score >= threshold or f"{score:.{digits}g}" != f"{float(threshold):.{digits}g}":
        return ""
    return "<div class='muted'>just below the threshold</div>"


#: the fewest significant digits a gallery prints, and the most (17 tell any two float64 numbers apart)
MIN_SCORE_DIGITS, MAX_SCORE_DIGITS = 3, 17
#: scores closer than this (relative) are told apart by the tiles' flagged / not flagged line, not by digits
SAME_SCORE_RTOL = 1e-9


def score_digits(scores, threshold=None):
    """The fewest significant digits (at least :data:`MIN_SCORE_DIGITS`) with which every two different finite
    values of ``scores`` print differently, and each of them differently from ``threshold``. All values share
    the digits, so the printed order is the true order: neighbouring tiles never look alike, and a score
    below the threshold never prints as the threshold (rounding to a fixed number of digits never swaps two
    numbers; it can only make different ones look equal, which this rules out)."""
    values = {float(v) for v in scores if v is not None and np.isfinite(v)}
    if threshold is not None and np.isfinite(threshold):
        values.add(float(threshold))
    values = _apart_from_rounding(values)
    for digits in range(MIN_SCORE_DIGITS, MAX_SCORE_DIGITS):
        if len({f"{v:.{digits}g}" for v in values}) == len(values):
            return digits
    return MAX_SCORE_DIGITS


def _apart_from_rounding(values):
    """``values`` with those closer than :data:`SAME_SCORE_RTOL` (relative) to the previous kept one dropped:
    float rounding (a percentile threshold one unit in the last place above a trusted score) is not a
    difference worth 17 digits on every tile; such a tile says "flagged" or "not flagged" all the same."""
    kept = []
    for v in sorted(values):
        if not kept or v - kept[-1] > SAME_SCORE_RTOL * max(abs(v), abs(kept[-1]), 1e-300):
            kept.append(v)
    return kept


def page(title, subtitle, sections, *, subtitle_html=None, meta=None):
    """The whole HTML document. ``sections``: ``[(heading or None, html body)]``; ``subtitle_html``: the subtitle as
    HTML (names in it escaped and :func:`isolate`-d by the caller) instead of the text ``subtitle``; ``meta``:
    ``{name: content}`` of ``<meta>`` elements for programs reading the page (escaped here)."""
    body = "".join((f"<h2>{escape(h)}</h2>" if h else "") + b for h, b in sections)
    sub = escape(subtitle) if subtitle_html is None else subtitle_html
    metas = "".join(f"<meta name='{escape(k)}' content='{escape(v)}'>" for k, v in (meta or {}).items())
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{metas}<title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1><p class='muted'>{sub}</p>"
            f"{body}</body></html>")
