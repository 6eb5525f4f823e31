"""The audit's HTML report: counts, warnings, what was audited, score histograms, galleries of the worst
samples, near duplicates, samples not scored, and how to review them in the App.

One self-contained file (inline SVG plots, base64 thumbnails) built by :func:`write_report` from the summary
and findings of :func:`ood_core.fo.audit.audit`; the building blocks are in :mod:`ood_core.report`.
"""

import csv
import hashlib
import io
import json
import os
import re
import time
from html import unescape as html_unescape

import numpy as np

from ..detectors.transductive import decision_line, decision_sentence
from ..errors import OODInputError
from ..publish import publish_file, temporary_beside

from .audit_owners import OWNER_META, disclaim, other_audit, owner_json, recorded_owner
from .near_duplicates import TAG as NEAR_DUPLICATE_TAG
from .report_files import check_report_files, csv_path_for, is_audit_csv, is_audit_report, marked, read_regular_file
from .run_info import get_ood_run_info

#: tags the audit adds (flag tags go through ``flag_samples``, which only removes its own); the CSV's ``issue``
TAGS = {"ood": "ood", "label_issues": "label_issue", "near_duplicates": NEAR_DUPLICATE_TAG}


def suggested_label_field(samples, run_key):
    """The suggested-label field a label-issue run records, if any (older runs have none; a run whose votes
    favour every given label writes none)."""
    info = get_ood_run_info(samples, run_key)
    field = (info.get("suggestion") or {}).get("field")
    return field if field and samples._dataset.get_field(field) is not None else None


def _as_label(value):
    return getattr(value, "label", value)


def worst_tiles(samples, score_field, num, label_field=None, suggested_field=None, flagged_ids=None,
                trusted_ids=None, ood_ids=None):
    """Gallery tiles (:func:`ood_core.report.gallery`) of the ``num`` highest scores: thumbnail,
    score, file name, given label and the suggested label where the run suggests one (it differs from the given
    label); with ``flagged_ids`` each tile says whether the audit flagged it, and ids in ``trusted_ids`` are
    marked as trusted samples, those in ``ood_ids`` (the wrong-label gallery) as also flagged out-of-distribution
    (no class may fit them: a relabel would not fix them). An unlabelled sample says "no label" (class
    ``nolabel``), apart from a class named "None". The gallery prints the scores with the digits that tell them
    (and the threshold) apart."""
    from ..report import isolate_text, thumbnail

    view = samples.exists(score_field).sort_by(score_field, reverse=True).limit(num)
    fields = ["id", "filepath", score_field]
    fields += [label_field] if label_field else []
    fields += [suggested_field] if suggested_field else []
    tiles = []
    for row in zip(*view.values(fields)):
        lines = []
        if flagged_ids is not None:
            lines.append(("flagged", "flagged") if row[0] in flagged_ids else ("muted", "not flagged"))
        if trusted_ids is not None and row[0] in trusted_ids:
            lines.append(("muted", "trusted sample"))
        if ood_ids is not None and row[0] in ood_ids:
            lines.append(("flagged", f"also flagged OOD (tag '{TAGS['ood']}')"))
        if label_field:  # an unlabelled sample apart from a class named "None"
            label = _as_label(row[3])
            lines.append(("nolabel", "no label") if label is None else ("given", f"label: {isolate_text(label)}"))
        if suggested_field and row[-1] is not None:
            lines.append(("suggest", f"suggested: {isolate_text(_as_label(row[-1]))}"))
        # the caption's id line names the file too (the report's gallery prints "id" under the captions)
        # names isolated: a right-to-left mark in a label or file name would turn the rest of its line around
        image, no_image = thumbnail(row[1])
        tiles.append({"id": f"{isolate_text(os.path.basename(row[1]))} ({row[0]})", "sample_id": row[0],
                      "image": image, "no_image": no_image, "score": float(row[2]), "lines": lines})
    return tiles


def _gallery_heading(what, tiles, field):
    return f"{what} (top {len(tiles):,} by {field})"


def write_report(samples, summary, found, duplicates, num_worst, path, table, overwrite=False):
    """Build the report of the audit and put it in place with its CSV ``table`` (:func:`csv_table`) beside it
    (:func:`publish_report`); the report of another audit at ``path`` is replaced only with ``overwrite``, and
    named in the warnings (:func:`refuse_other_audits_report`)."""
    from .. import report as html

    dataset = samples._dataset
    replaced = report_owner(samples, summary["audit_key"], path)  # another audit's: its record stops naming it
    replacing = refuse_other_audits_report(samples, summary["audit_key"], path, overwrite)
    summary["warnings"] += [replacing] if replacing else []
    n = summary["num_samples"]
    ref = summary["reference_tag"]
    trusted = set(dataset.match_tags(ref).values("id")) if ref else None
    # the trusted samples the pass rate flags on purpose (5% of them at 95%), named apart from the new ones
    of_trusted = f"; {len(trusted & set(found['flagged']['ood'])):,} of them trusted" if ref else ""
    cards = [(f"{n:,}", "samples audited"),
             (f"{summary['num_ood_flagged']:,}", f"flagged as out-of-distribution (tag '{TAGS['ood']}'{of_trusted})")]
    if summary["label_field"]:
        cards.append((f"{summary['num_label_flagged']:,}",
                      f"flagged as possibly wrong labels (tag '{TAGS['label_issues']}')"))
    if summary["duplicate_threshold"] is not None:
        cards.append((f"{summary['num_duplicates']:,}", f"near duplicates (tag '{TAGS['near_duplicates']}')"))
    if summary["num_skipped"]:
        cards.append((f"{summary['num_skipped']:,}", "skipped: no embedding"))
    scores = {task: _scores(samples, found["runs"][task])[1] for task in found["thresholds"]}  # the view's
    inputs = _inputs(summary, found, scores)
    sections = [(None, html.cards(cards)), ("What was audited", html.table(["input", "value"], inputs))]
    if summary["warnings"]:
        sections.insert(1, ("Warnings", "".join(f"<p class='warning'>{html.text_html(w)}</p>"
                                                for w in summary["warnings"])))

    ood_field = found["runs"]["ood"]
    not_trusted = None  # the histogram's two groups: trusted samples (self-excluded scores) and the rest
    if ref:
        not_trusted = np.array([i not in trusted for i in samples.exists(ood_field).values("id")])
    plots = [html.histogram_svg(scores["ood"], threshold=_shown_threshold(scores["ood"], found, "ood"),
                                is_positive=not_trusted,
                                names=("not trusted", f"'{html.isolate_text(ref)}'"),
                                title=_ood_histogram_title(ood_field, summary))]
    if "label_issues" in found["runs"]:
        issue_field = found["runs"]["label_issues"]
        plots.append(html.histogram_svg(scores["label_issues"],
                                        threshold=_shown_threshold(scores["label_issues"], found, "label_issues"),
                                        title=f"{issue_field}: neighbour votes against the given label "
                                              "(higher = more suspicious)"))
    sections.append(("Score distributions", "<div class='plots'>" + "".join(plots) + "</div>"))

    ood_flagged = set(found["flagged"]["ood"])
    tiles = worst_tiles(samples, ood_field, num_worst, summary["label_field"],
                        flagged_ids=ood_flagged, trusted_ids=trusted)
    sections.append((_gallery_heading("Most out-of-distribution samples", tiles, ood_field),
                     _gallery(scores["ood"], found, "ood", tiles)))
    if "label_issues" in found["runs"]:
        issue_field = found["runs"]["label_issues"]
        suggested = suggested_label_field(samples, issue_field)
        tiles = worst_tiles(samples, issue_field, num_worst, summary["label_field"], suggested,
                            flagged_ids=set(found["flagged"]["label_issues"]), ood_ids=ood_flagged)
        both = sum(t["sample_id"] in ood_flagged for t in tiles)
        one = both == 1
        both_note = (f"<p class='muted'>{both} of these {len(tiles)} {'is' if one else 'are'} also flagged "
                     f"out-of-distribution: no class may fit {'it' if one else 'them'}, so removing "
                     f"{'it' if one else 'them'} may be the fix rather than a new label.</p>" if both else "")
        sections.append((_gallery_heading("Most suspicious labels", tiles, issue_field),
                         _suggestion_note(samples, issue_field, suggested) + both_note
                         + _gallery(scores["label_issues"], found, "label_issues", tiles)))
    if duplicates.get("duplicate_ids"):
        sections.append(("Near duplicates", _duplicates_html(samples, duplicates, num_worst)))
    if summary["skipped"]:
        listed = summary["skipped"]
        more = summary["num_skipped"] - len(listed)
        sections.append((f"Not scored: no embedding ({summary['num_skipped']:,})",
                         html.table(["file", "why"],
                                    [(html.isolate_text(s["filepath"]),
                                      s.get("error", f"no embedding in {summary['embeddings_field']}"))
                                     for s in listed])
                         + (f"<p class='muted'>and {more:,} more: filter the App by "
                            f"<code>{html.escape(ood_field)}</code> is None.</p>" if more > 0 else "")))
    sections.append(("Review in the FiftyOne App", _how_to_review(summary)))
    # the dataset's name isolated: a right-to-left one would take the rest of the sentence along
    subtitle = (f"dataset '{html.isolate(dataset.name)}'" + html.escape(
        f", {n:,} samples, audit '{summary['audit_key']}', {time.strftime('%Y-%m-%d %H:%M')}, took "
        f"{summary['seconds']:.0f} s. Higher score = more suspicious; a sample is flagged when score >= threshold."))
    page = html.page(f"{REPORT_TITLE}: {dataset.name}", None, sections, subtitle_html=subtitle,
                     meta={OWNER_META: owner_json(samples, summary["audit_key"], summary.get("output_token"))})
    from .report_leftovers import journal_report

    journal_report(samples, found, path)  # repair_ood_runs finds the report of an audit killed from here on
    publish_report(path, page, table)
    if replacing:  # that audit's record no longer names the file
        disclaim(replaced, "report_path", path, f"audit {summary['audit_key']!r} of dataset {dataset.name!r}")


def _all_equal(scores, found, task):
    """The one score of ``task`` when every score of the view is the same and none is flagged (identical images:
    the rules let a tie at the lowest score pass, their threshold is the next float above it), else None."""
    scores = np.asarray(scores, dtype=np.float64)
    if not scores.size or scores.min() != scores.max() or found["flagged"].get(task):
        return None
    return float(scores[0])


def _flagged_when(scores, found, task):
    """The report's "flagged when" value of ``task``: its threshold and rule, or in words why none is flagged when
    all the scores are equal (the threshold is then the next float above them: "score >= 4.941e-324" for zeros)."""
    same = _all_equal(scores, found, task)
    if same is None:
        return f"score >= {found['thresholds'][task]:.4g} ({found['rules'][task]})"
    return (f"none: all {scores.size:,} scores are equal ({same:.4g}), so no sample stands out "
            f"(rule: {found['rules'][task]})")


def _shown_threshold(scores, found, task):
    """The threshold a plot draws: none when all the scores are equal and none is flagged (see :func:`_all_equal`)."""
    return None if _all_equal(scores, found, task) is not None else found["thresholds"][task]


def _gallery(scores, found, task, tiles):
    """The gallery of ``task``'s worst ``tiles`` with the threshold, or saying that all the scores are equal."""
    from .. import report as html

    same = _all_equal(scores, found, task)
    if same is None:
        return html.gallery(tiles, threshold=found["thresholds"][task])
    return (f"<p class='muted'>All {scores.size:,} scores are equal ({same:.4g}): none is flagged.</p>"
            + html.gallery(tiles))


def _suggestion_note(samples, run_key, suggested_field):
    """What the suggested labels of the tiles are, or why there are none."""
    from ..report import escape

    if suggested_field:
        return (f"<p class='muted'>Suggested: the class the neighbours' votes favour "
                f"(<code>{escape(suggested_field)}</code>), only where it differs from the given label.</p>")
    if (get_ood_run_info(samples, run_key).get("suggestion") or {}).get("num_suggested") == 0:
        return "<p class='muted'>No suggested labels: the votes favour the given label of every sample.</p>"
    return "<p class='muted'>No suggested labels: this label-issue run records no suggested-label field.</p>"


def _scores(samples, field):
    view = samples.exists(field)
    return view.values("id"), np.array(view.values(field), dtype=np.float64)


def _inputs(summary, found, scores):
    """The rows of the report's "What was audited" table, the names the user gave isolated (``isolate_text``)."""
    from .. import report as html

    computed = "computed now" if summary["embeddings_computed"] else "existing"
    inputs = [
        ("embeddings", f"{html.isolate_text(summary['embeddings_field'])} ({computed})"),
        ("reference (trusted samples)", html.isolate_text(summary["reference"]) if summary["reference"] else
         "none: the audited samples are scored against each other (each left out)"),
        ("label field", html.isolate_text(summary["label_field"]) if summary["label_field"] else
         "none: no wrong-label scores"),
        ("OOD score", decision_sentence(summary.get("density_ratio"))),
        ("scored-set density ratio", decision_line(summary.get("density_ratio"))),
        *((f"{what} flagged when", _flagged_when(scores[task], found, task))
          for task, what in (("ood", "OOD"), ("label_issues", "wrong labels")) if task in found["thresholds"]),
        ("runs written (score, flags)", ", ".join(summary["runs"].values())),
        ("fields written", ", ".join(summary.get("fields", []))),
    ]
    inputs = [row for row in inputs if row[1] is not None]  # the density ratio's rows: the default detector's
    if summary.get("removed_runs"):
        inputs.append(("removed: runs of the earlier audit not written this time", ", ".join(summary["removed_runs"])))
    return inputs


def _ood_histogram_title(ood_field, summary):
    """What the OOD scores measure, on their histogram: the standardised distance, and the density ratio when
    it was added (the scale's "one standard deviation" then no longer holds)."""
    whom = "trusted" if summary["reference"] else "audited"
    if (summary.get("density_ratio") or {}).get("used"):
        return (f"{ood_field}: k-NN distance standardised on the {whom} samples, plus the scored set's density "
                "ratio (see 'What was audited'; higher = more OOD)")
    return (f"{ood_field}: k-NN distance, standardised on the {whom} samples (0 = as typical as they are, 1 = one "
            "of their standard deviations further; higher = more OOD)")


def _duplicates_html(samples, duplicates, num):
    from .. import report as html

    pairs = []
    for sid in duplicates["duplicate_ids"][:num]:
        other, dist = min(duplicates["neighbors"].get(sid) or [(None, 0.0)], key=lambda t: t[1])
        pairs.append((sid, other, dist))
    ids = [i for a, b, _ in pairs for i in (a, b) if i]
    paths = dict(zip(*samples._dataset.select(ids).values(["id", "filepath"]))) if ids else {}
    tiles = []
    for a, b, dist in pairs:
        for sid, role in ((a, "duplicate"), (b, "kept")):
            if sid:
                name = os.path.basename(paths.get(sid, ""))
                image, no_image = html.thumbnail(paths.get(sid, ""))
                tiles.append({"id": f"{html.isolate_text(name)} ({sid})", "image": image, "no_image": no_image,
                              "score": dist,
                              "lines": [("given", f"{role} (cosine distance)")]})
    return html.gallery(tiles)


def _how_to_review(summary):
    from .. import report as html

    views = "".join(f"<li><code>{html.escape(v)}</code></li>" for v in summary["saved_views"])
    code = (f"import fiftyone as fo\n\ndataset = fo.load_dataset({summary['dataset']!r})\n"
            f"session = fo.launch_app(dataset)\n"
            + (f"session.view = dataset.load_saved_view({summary['saved_views'][0]!r})\n"
               if summary["saved_views"] else ""))
    saved = (f"<p>Saved views (App: the <b>saved views</b> menu above the grid), worst first:</p><ul>{views}</ul>"
             if views else "<p>No saved views: the audit found nothing to review (no flagged sample, no near-duplicate "
             "group).</p>")
    return (f"{saved}<pre>{html.escape(code)}</pre>"
            "<p>In the App: open the <b>OOD review</b> panel (<b>+</b> next to the Samples tab), pick the score "
            "run, move the threshold or pick a preset, select samples in the grid and tag them "
            "<code>ood_confirmed</code> / <code>ood_dismissed</code>. Filter by the tags "
            f"<code>ood</code>, <code>label_issue</code>, <code>near_duplicate</code> in the sidebar. "
            f"The flagged samples are also listed in <code>{html.escape(summary['csv_path'])}</code>.</p>")


def csv_table(samples, found, label_field, duplicates):
    """The CSV of flagged samples, one row per flagged sample and finding (id, filepath, issue = the tag it got,
    score, label, suggested label): ``(text, number of rows)``; :func:`write_report` puts it in place beside the
    report."""
    rows = []
    for task in ("ood", "label_issues"):
        issue, ids = TAGS[task], found["flagged"].get(task)
        if not ids:
            continue
        run = found["runs"][task]
        suggested = suggested_label_field(samples, run) if task == "label_issues" else None
        fields = ["id", "filepath", run] + ([f"{label_field}.label"] if label_field else []) + \
            ([f"{suggested}.label"] if suggested else [])
        for row in sorted(zip(*samples.select(ids).values(fields)), key=lambda r: -r[2]):  # highest score first
            label = row[3] if label_field else ""
            rows.append([row[0], sheet_text(row[1]), issue, f"{row[2]:.10g}", sheet_text(label),
                         sheet_text((row[-1] or "") if suggested else "")])
    if duplicates.get("duplicate_ids"):
        view = samples.select(duplicates["duplicate_ids"])
        for sid, fp in zip(*view.values(["id", "filepath"])):
            nearest = min(duplicates["neighbors"].get(sid, [("", 0.0)]), key=lambda t: t[1])
            rows.append([sid, sheet_text(fp), TAGS["near_duplicates"], f"{nearest[1]:.6g}", "", ""])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    return buffer.getvalue(), len(rows)


#: first characters that make a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def sheet_text(value):
    """A text cell of the CSV as a spreadsheet shows it, never run: a label or path that begins like a formula
    (``=HYPERLINK(...)``, ``@SUM(...)``) gets a leading apostrophe, the spreadsheet's mark for text, so opening
    the CSV cannot run what an annotator typed. Numbers written as text (``-1``, ``+3.5``) are left as they are."""
    text = "" if value is None else str(value)
    if not text.startswith(FORMULA_STARTS):
        return text
    try:
        float(text)
        return text
    except ValueError:
        return "'" + text


#: the report's title (and tab name) begins with it; a plain CSV header (the mark is in the report, see below)
REPORT_TITLE = "fiftyone-ood audit"
CSV_HEADER = ["sample_id", "filepath", "issue", "score", "label", "suggested_label"]


_OWNER = re.compile(rb"<meta name='" + OWNER_META.encode() + rb"' content='([^']*)'>")


def refuse_other_audits_report(samples, audit_key, report_path, overwrite):
    """Refuse, unless ``overwrite``, a ``report_path`` holding the report of another audit (another key, or another
    dataset) whose record still names that file (:func:`report_owner`): the audit would replace that report and
    its CSV, and the other audit's record would name a report that is no longer its own. With ``overwrite``,
    returns the warning that says whose report was replaced (else None)."""
    whose = other_audit(samples, audit_key, report_owner(samples, audit_key, report_path))
    if whose is None:
        return None
    if overwrite:
        return (f"this report replaced the report of {whose} at {report_path!r} (and its CSV); that audit's "
                "record no longer names them (its report_path and csv_path are None, its replaced_outputs says why)")
    suggested = f"{os.path.splitext(report_path)[0]}_{audit_key}.html"
    raise OODInputError(
        f"report_path={report_path!r} holds the report of {whose} (its record names this file and the CSV "
        f"{csv_path_for(report_path)!r} beside it); this audit ({audit_key!r} of dataset {samples._dataset.name!r}) "
        f"would replace them. Pass another report_path, e.g. {suggested!r}, "
        "or overwrite=True to replace that report")


def report_owner(samples, audit_key, report_path):
    """``(dataset, audit key)`` of the audit whose report (exactly as written) is at ``report_path`` and whose record
    still names it, or None: no such report, or one no audit names any more (its dataset or record deleted, or the
    audit redone elsewhere; an audit whose key was renamed with FiftyOne's ``rename_run`` keeps it). The report's
    head names its audit (:data:`OWNER_META`); one written
    by a version before that is the report of the audit of ``samples``' dataset whose record names it
    (``audit_key`` first)."""
    data = read_regular_file(report_path) if is_audit_report(report_path) else None
    if data is None:
        return None
    named = _OWNER.search(data)
    try:
        named = json.loads(html_unescape(named.group(1).decode("utf-8"))) if named else None
    except ValueError:
        named = None
    return recorded_owner(samples, audit_key, named, "report_path", report_path)


def publish_report(path, page, table):
    """Put the report and its CSV in place, each written whole into a private temporary file and published
    (:func:`ood_core.publish.publish_file`): a crash leaves the earlier file, and a file of the user's there, even
    one that appeared or was changed while the audit ran, is never replaced. The report goes first and vouches for
    the new CSV and for the earlier one while that is still there (:func:`.report_files.is_audit_csv`). Publishes
    into one path take turns (:func:`.report_leftovers.report_lock`); what a killed one left is put right first."""
    from .report_leftovers import recover_report, report_lock

    with report_lock(path):
        recover_report(path, locked=True)
        _publish_report(path, page, table)


def _publish_report(path, page, table):
    check_report_files(path)  # both files still the audit's (or absent): neither is written otherwise
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)  # checked, not made, before the audit wrote anything
    except OSError as e:
        raise OODInputError(f"report_path={path!r}: its folder cannot be created ({e}); pass a report_path in a "
                            "folder you can write to") from None
    csv_path, table = csv_path_for(path), table.encode("utf-8")
    vouched = [hashlib.sha256(table).hexdigest()]
    if is_audit_csv(csv_path, path):
        vouched.append(hashlib.sha256(read_regular_file(csv_path)).hexdigest())
    _replace_file(path, marked(page, vouched), is_audit_report)
    _replace_file(csv_path, table, lambda p: is_audit_csv(p, path))


def _replace_file(path, data, is_ours):
    from .report_leftovers import STAGED_KIND

    with temporary_beside(path, kind=STAGED_KIND) as tmp:
        with open(tmp, "xb") as f:  # a new file in a folder of this call's own: never another's, never a link
            f.write(data)
        publish_file(tmp, path, is_ours,
                     f"{path!r} was put there or changed by someone else while the audit ran, so it is not the "
                     "audit's own; the audit never replaces a file it did not write. Pass another report_path")
