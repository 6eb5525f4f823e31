"""The one-call audit (SDK + operator) on real Fashion-MNIST images, and its HTML report."""

import base64
import csv
import os
import re

from html import escape as html_escape

import numpy as np
import pytest

from ood_core.errors import OODInputError

PLUGIN = "@fiftyone-ood/ood"
HELD_OUT = {"Bag", "Ankle boot"}


@pytest.fixture
def small(dataset_factory, fashion_files):
    """50 real images: 5 per class; 3 per in-distribution class tagged 'trusted'; is_ood = Bag / Ankle boot."""
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(10) for j in range(5)]
    tags = [["trusted"] if names[i] not in HELD_OUT and j < 3 else [] for i, j in zip(idx, [i % 20 for i in idx])]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)
    ds.set_values("is_ood", [names[i] in HELD_OUT for i in idx])
    return ds


def _embed(ds, field="emb"):
    import ood_core as ood

    ood.compute_pyramid_embeddings(ds, field, model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1)


def test_audit_scores_flags_tags_and_writes_a_self_contained_report(small, tmp_path):
    import ood_core as ood
    from ood_core import thresholds

    ds = small
    _embed(ds)
    out = ood.audit(ds, report_path=str(tmp_path / "audit.html"), num_worst=6, near_duplicates=False)
    # inputs picked automatically: the embeddings run, the 'trusted' tag, the only label field
    assert (out["embeddings_field"], out["reference_tag"], out["label_field"]) == ("emb", "trusted", "ground_truth")
    assert not out["embeddings_computed"] and out["num_samples"] == 50 and out["num_skipped"] == 0
    ds.reload()
    scores = np.array(ds.values("audit_ood"))
    trusted = np.array(["trusted" in t for t in ds.values("tags")])
    # OOD flags: 95% of the trusted samples pass (percentile rule), flagged = score >= threshold
    t = thresholds.percentile_of_reference(scores[trusted], 0.95).threshold
    assert out["thresholds"]["ood"] == pytest.approx(t)
    flagged = scores >= t
    assert out["num_ood_flagged"] == flagged.sum() > 0
    assert ds.values("audit_ood_flag") == flagged.tolist()
    assert sorted(ds.match_tags("ood").values("id")) == sorted(np.array(ds.values("id"))[flagged].tolist())
    # wrong labels: top 5% of label-issue scores (ties flagged), tagged label_issue
    issue = np.array(ds.values("audit_label_issue"))
    assert out["num_label_flagged"] == (issue >= out["thresholds"]["label_issues"]).sum() >= 3
    assert len(ds.match_tags("label_issue")) == out["num_label_flagged"]
    # held-out classes rank high among the untrusted samples (positive class = OOD)
    is_ood = np.array(ds.values("is_ood"))
    auroc = ood.ood_metrics(scores[~trusted], is_ood[~trusted])["auroc"]
    assert auroc >= 0.65  # measured 0.70 with this tiny 176-dim embedding; chance is 0.5
    # saved views for the App, worst first
    assert out["saved_views"] == ["ood_audit-ood", "ood_audit-label-issues"]
    view = ds.load_saved_view("ood_audit-ood")
    assert view.values("audit_ood") == sorted(scores[flagged].tolist(), reverse=True)
    # the run record says where everything is
    info = ood.get_ood_run_info(ds, "ood_audit")
    assert info["kind"] == "audit" and info["audit_runs"]["ood"] == "audit_ood"
    assert info["report_path"] == str(tmp_path / "audit.html")

    # the CSV lists every flagged sample once per finding
    with open(out["csv_path"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == out["num_ood_flagged"] + out["num_label_flagged"] == out["num_csv_rows"]
    assert {r["sample_id"] for r in rows if r["issue"] == "ood"} == set(ds.match_tags("ood").values("id"))
    # each row's issue is the tag the sample got; wrong labels carry the suggested label where there is one
    assert {r["issue"] for r in rows} == {"ood", "label_issue"}
    suggested = dict(zip(*ds.exists("audit_label_issue_suggestion").values(["id", "audit_label_issue_suggestion"])))
    for r in rows:
        expected = suggested[r["sample_id"]].label if r["issue"] == "label_issue" and r["sample_id"] in suggested \
            else ""
        assert r["suggested_label"] == expected
    assert any(r["suggested_label"] for r in rows)

    # the report: one file, no external resources, real thumbnails, plots, counts, how to review
    html = open(out["report_path"], encoding="utf-8").read()
    assert not re.search(r"(src|href)=['\"]https?://", html)
    thumbs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(thumbs) == 12  # 6 worst OOD + 6 worst labels
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(thumbs[0]))).size == (112, 112)  # 28 px x 4, pixels kept
    assert html.count("<svg") == 2 and "threshold" in html
    assert f"<div class='n'>{out['num_ood_flagged']}</div>" in html
    # how many of the OOD flags are trusted samples (the pass rate flags some on purpose); each threshold's rule
    flagged_trusted = len(ds.match_tags("ood").match_tags("trusted"))
    assert f"flagged as out-of-distribution (tag &#x27;ood&#x27;; {flagged_trusted} of them trusted)" in html
    assert f"score &gt;= {out['thresholds']['ood']:.4g} ({html_escape(out['rules']['ood'])})" in html
    assert f"score &gt;= {out['thresholds']['label_issues']:.4g} (top 5% of the scores" in html
    # what the OOD score is: whether the scored set's density ratio was added (the scores then depend on this
    # batch), as the scoring run recorded it, in the result, the report's table and its histogram's title
    from ood_core.detectors.transductive import decision_line, decision_sentence

    decision = ood.get_ood_run_info(ds, "audit_ood")["detector_fitted"]["transductive"]
    assert out["density_ratio"]["used"] == decision["used"] and out["density_ratio"]["p_value"] == decision["p_value"]
    assert f"<td>OOD score</td><td>{html_escape(decision_sentence(decision))}</td>" in html
    assert f"<td>scored-set density ratio</td><td>{html_escape(decision_line(decision))}</td>" in html
    assert ("plus the scored set&#x27;s density ratio" in html) == decision["used"]
    assert ("1 = one of their standard deviations further" in html) == (not decision["used"])
    assert "ood_audit-ood" in html and "OOD review" in html and "ood_confirmed" in html
    # the worst OOD tile is the highest score
    top = ds.sort_by("audit_ood", reverse=True).first()
    assert html.index(top.id) < html.index("Most suspicious labels")
    # each tile says whether the audit flagged it (and whether it is a trusted sample)
    assert "Most out-of-distribution samples (top 6 by audit_ood)" in html
    ood_part = html[html.index("Most out-of-distribution samples"):html.index("Most suspicious labels")]
    worst6 = ds.sort_by("audit_ood", reverse=True).limit(6)
    assert ood_part.count("<div class='flagged'>flagged</div>") == int(np.sum(worst6.values("audit_ood_flag")))
    assert ood_part.count("trusted sample") == len(worst6.match_tags("trusted"))
    assert ood_part.count("not flagged") == 6 - int(np.sum(worst6.values("audit_ood_flag")))
    # a suspicious label that is also flagged OOD says so: no class may fit it (remove rather than relabel)
    label_part = html[html.index("Most suspicious labels"):]
    both = len(ds.sort_by("audit_label_issue", reverse=True).limit(6).match_tags("ood"))
    assert both > 0  # the held-out Bags and Ankle boots carry in-distribution labels
    assert label_part.count("also flagged OOD (tag &#x27;ood&#x27;)") == both
    assert f"{both} of these 6 {'is' if both == 1 else 'are'} also flagged out-of-distribution" in label_part


def test_audit_says_when_the_scores_depend_on_the_batch(dataset_factory, fashion_files, tmp_path):
    """A crowd of held-out images (40 Bags and Ankle boots among 56 untrusted samples): the scored set's density
    ratio is added, and the result view, the report's table and its histogram say so (the histogram no longer
    reads the score as a number of standard deviations)."""
    import ood_core as ood
    from ood_core.detectors.transductive import decision_line, decision_sentence
    from operators.audit import audit_report

    paths, names = fashion_files
    idx = [i for i in range(len(paths)) if names[i] in HELD_OUT or i % 20 < 5]
    tags = [["trusted"] if names[i] not in HELD_OUT and i % 20 < 3 else [] for i in idx]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)
    _embed(ds)
    out = ood.audit(ds, report_path=str(tmp_path / "audit.html"), num_worst=4, near_duplicates=False)
    decision = ood.get_ood_run_info(ds, "audit_ood")["detector_fitted"]["transductive"]
    assert decision["used"] and out["density_ratio"]["used"] and out["density_ratio"]["weight"] == decision["weight"]
    html = open(out["report_path"], encoding="utf-8").read()
    assert f"<td>OOD score</td><td>{html_escape(decision_sentence(decision))}</td>" in html
    assert "crowd together where trusted images are rare" in html
    assert f"<td>scored-set density ratio</td><td>{html_escape(decision_line(decision))}</td>" in html
    assert html_escape(f"permutation p = {decision['p_value']:.3g}") in html
    assert "plus the scored set&#x27;s density ratio" in html and "standard deviations further" not in html
    # the App's result view of the audit says it in the same words
    view = str(audit_report(out))
    assert "OOD scores: " + decision_sentence(decision) in view


def test_audit_refuses_to_repeat_and_overwrites_cleanly(small, tmp_path):
    import ood_core as ood

    ds = small
    _embed(ds)
    ood.audit(ds, report_path=str(tmp_path / "a.html"), near_duplicates=False)
    with pytest.raises(ValueError, match="audit 'ood_audit' already exists.*overwrite=True"):
        ood.audit(ds, report_path=str(tmp_path / "a.html"))
    untrusted = ds.match_tags("trusted", bool=False)
    # wrong-label scores weigh each label against the samples scored with it: not redone from a view, and the
    # audit says so before it writes anything
    before = {f: ds.values(f) for f in ("audit_ood", "audit_label_issue", "audit_ood_flag")}
    with pytest.raises(ValueError, match=r"run 'audit_label_issue': a wrong-label score weighs each sample's label"):
        ood.audit(untrusted, report_path=str(tmp_path / "a.html"), overwrite=True, near_duplicates=False)
    assert {f: ds.values(f) for f in before} == before
    # an audit of the OOD scores alone is redone from a view
    whole = ood.audit(ds, label_field=None, report_path=str(tmp_path / "a.html"), overwrite=True,
                      near_duplicates=False)
    first = set(ds.match_tags("ood").values("id"))
    out = ood.audit(untrusted, label_field=None, report_path=str(tmp_path / "a.html"), overwrite=True,
                    near_duplicates=False)
    assert out["num_samples"] == 50 - len(ds.match_tags("trusted"))
    # no trusted sample in the view: the trusted samples elsewhere (scored by the same run, the same scores as
    # the whole-dataset audit) still set the cut; the view is flagged again, the samples outside it keep their
    # flags and tags (overwriting from a view replaces the view's values), and tags and flags agree everywhere
    assert out["rules"]["ood"].startswith("95% of the trusted samples pass")
    assert out["thresholds"]["ood"] == whole["thresholds"]["ood"]
    assert set(untrusted.match_tags("ood").values("id")) == first & set(untrusted.values("id"))
    assert len(untrusted.match_tags("ood")) == out["num_ood_flagged"]
    assert set(ds.match_tags("ood").values("id")) == first
    from fiftyone import ViewField as F

    assert set(ds.match(F("audit_ood_flag") == True).values("id")) == first  # noqa: E712
    assert first  # the first audit flagged something


def test_audit_without_labels_trusted_tag_or_embeddings(dataset_factory, fashion_files, session_extractor,
                                                        tmp_path):
    import ood_core as ood

    paths, _ = fashion_files
    ds = dataset_factory(paths[::10])  # 20 unlabelled, untagged images
    out = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)
    assert out["embeddings_computed"] and out["embeddings_field"] == "ood_embeddings"
    assert out["label_field"] is None and out["reference"] is None
    assert "label_issues" not in out["runs"] and not ds.has_field("audit_label_issue")
    scores = np.array(ds.values("audit_ood"))
    assert out["num_ood_flagged"] == (scores >= out["thresholds"]["ood"]).sum() >= 1  # top 5% (ties flagged)
    assert out["rules"]["ood"].startswith("top 5%")
    html = open(out["report_path"], encoding="utf-8").read()
    assert "none: the audited samples are scored against each other" in html and "Most suspicious labels" not in html


def test_audit_skips_unreadable_images_lists_them_and_can_be_strict(dataset_factory, fashion_files,
                                                                    session_extractor, tmp_path):
    import ood_core as ood
    from ood_core.images import ImageLoadError

    paths, _ = fashion_files
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    missing = str(tmp_path / "missing.png")
    files = list(paths[::10]) + [str(broken), missing]
    ds = dataset_factory(files)
    with pytest.raises(ImageLoadError, match="broken.png"):
        ood.audit(ds, report_path=str(tmp_path / "strict.html"), near_duplicates=False, skip_failures=False)
    assert not ds.has_field("audit_ood") and "ood_audit" not in ood.list_ood_runs(ds)
    unreadable = dataset_factory([str(broken), missing])
    with pytest.raises(OODInputError, match="none of the 2 images of the view could be read .the first: image file"):
        ood.audit(unreadable, report_path=str(tmp_path / "none.html"), near_duplicates=False)
    out = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)  # the default skips
    assert out["num_skipped"] == 2 and ds.count("audit_ood") == len(files) - 2
    listed = {s["filepath"]: s["error"] for s in out["skipped"]}
    assert set(listed) == {str(broken), missing}
    assert "could not be decoded" in listed[str(broken)] and "does not exist" in listed[missing]
    html = open(out["report_path"], encoding="utf-8").read()
    assert "Not scored: no embedding (2)" in html and "missing.png" in html
    # the run's results keep the list
    from ood_core.fo import runs as fo_runs

    assert fo_runs.load_ood_results(ds, "ood_audit").summary["skipped"] == out["skipped"]
    # a redo reuses the embeddings: the same files are named with the same reasons (it said "no embedding" only)
    again = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False, overwrite=True)
    assert not again["embeddings_computed"] and {s["filepath"]: s.get("error") for s in again["skipped"]} == listed
    assert "could not be decoded" in open(again["report_path"], encoding="utf-8").read()


def test_audit_inputs_warn_on_few_trusted_and_skip_outputs_and_empty_label_fields(small, tmp_path):
    import ood_core as ood
    from ood_core.fo import inventory

    ds = small
    _embed(ds)
    report = str(tmp_path / "r.html")
    out = ood.audit(ds, report_path=report, near_duplicates=False)
    # 24 trusted samples: the 95% cut is a real percentile; the two held-out classes have no trusted image
    assert len(out["warnings"]) == 1
    assert out["warnings"][0].startswith("2 class(es) of 'ground_truth' among the scored items have no reference "
                                         "(trusted) item: 'Ankle boot' (5), 'Bag' (5). Their 10 items")
    assert out["warnings"][0].endswith("tag a few known-good images of each 'trusted' and re-run with overwrite=True")
    keep = ds.match_tags("trusted").limit(3).values("id")
    covered = len(set(ds.select(keep).values("ground_truth.label")))
    ds.match_tags("trusted").exclude(keep).untag_samples("trusted")
    out = ood.audit(ds, report_path=report, near_duplicates=False, overwrite=True)
    assert len(out["warnings"]) == 2 and out["warnings"][0].startswith("only 3 trusted sample(s)")
    assert "tag at least 20 known-good samples (a few per class) 'trusted'" in out["warnings"][0]
    assert out["warnings"][1].startswith(f"{10 - covered} class(es) of 'ground_truth'")
    assert "only 3 trusted sample(s)" in open(report).read()
    # the audit's own suggested-label field is an output, never taken for the labels to check
    assert ds.has_field("audit_label_issue_suggestion")
    ds.rename_sample_field("ground_truth", "label")
    assert inventory.classification_fields(ds) == ["label"] and inventory.default_label_field(ds) == "label"
    ds.set_values("label", [None] * len(ds))
    out = ood.audit(ds, report_path=report, near_duplicates=False, overwrite=True)  # auto: no labels, none used
    assert out["label_field"] is None and out["num_ood_flagged"] >= 1
    # refused before the OOD runs are redone (it was refused only at the wrong-label step, after them)
    runs_before = {k: str(ds.get_run_info(k).timestamp) for k in ood.list_ood_runs(ds)}
    with pytest.raises(OODInputError, match="audit label_field 'label' holds no label in the view"):
        ood.audit(ds, label_field="label", report_path=report, near_duplicates=False, overwrite=True)
    assert {k: str(ds.get_run_info(k).timestamp) for k in ood.list_ood_runs(ds)} == runs_before


def test_audit_of_a_one_class_label_field_flags_no_wrong_labels(dataset_factory, fashion_files,
                                                                 session_extractor, tmp_path):
    """One class: no neighbour can vote for another label, so every wrong-label score ties at the lowest
    value and nothing is flagged (the top-5% rule used to flag all of them)."""
    import ood_core as ood

    paths, _ = fashion_files
    ds = dataset_factory(paths[::10], ["Shirt"] * len(paths[::10]))
    out = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)
    assert out["label_field"] == "ground_truth"
    issues = np.array(ds.values("audit_label_issue"))
    assert issues.size == len(ds) and np.unique(issues).size == 1
    assert out["num_label_flagged"] == 0 and len(ds.match_tags("label_issue")) == 0
    assert not any(ds.values("audit_label_issue_flag"))
    assert out["num_ood_flagged"] >= 1  # the OOD ranking still flags its top 5%
    # no empty saved view of the wrong labels (nothing to review there); the summary and record list what was saved
    assert out["saved_views"] == ds.list_saved_views() == ["ood_audit-ood"]
    assert ood.get_ood_run_info(ds, "ood_audit")["saved_views"] == ["ood_audit-ood"]
    assert "ood_audit-label-issues" not in open(out["report_path"], encoding="utf-8").read()
    with pytest.raises(OODInputError, match="needs at least 2 samples.*the view has 1"):
        ood.audit(ds.limit(1), audit_key="one", report_path=str(tmp_path / "one.html"))
    assert "one" not in ood.list_ood_runs(ds)


def test_near_duplicates_are_found_tagged_and_listed(dataset_factory, fashion_files, tmp_path):
    import ood_core as ood

    paths, names = fashion_files
    picked = paths[:20:2] + [paths[0], paths[2]]  # two images twice: exact duplicates
    ds = dataset_factory(picked, names[:20:2] + [names[0], names[2]])
    _embed(ds)
    out = ood.audit(ds, report_path=str(tmp_path / "d.html"))
    assert out["num_duplicates"] == 2
    dups = ds.match_tags("near_duplicate")
    assert sorted(dups.values("filepath")) == sorted([paths[0], paths[2]])
    assert "ood_audit-near-duplicates" in out["saved_views"]
    assert len(ds.load_saved_view("ood_audit-near-duplicates")) == 4
    with open(out["csv_path"]) as f:
        assert sum(r["issue"] == "near_duplicate" for r in csv.DictReader(f)) == 2
    assert "Near duplicates" in open(out["report_path"], encoding="utf-8").read()
    # a second audit with overwrite does not pile up tags
    ood.audit(ds, report_path=str(tmp_path / "d.html"), overwrite=True)
    assert len(ds.match_tags("near_duplicate")) == 2


def test_report_shows_suggested_labels_when_the_run_records_them(small):
    import fiftyone as fo

    from ood_core.fo import audit_report, runs

    ds = small
    ds.set_values("sugg", [fo.Classification(label=f"class{i % 3}") for i in range(len(ds))])
    runs.write_and_record(ds, [("issue", list(np.linspace(0, 1, len(ds))))], "issue", kind="label_issues",
                          score_field="issue", suggestion={"field": "sugg"})
    assert audit_report.suggested_label_field(ds, "issue") == "sugg"
    tiles = audit_report.worst_tiles(ds, "issue", 3, "ground_truth", "sugg")
    assert [t["score"] for t in tiles] == pytest.approx([1.0, 1 - 1 / 49, 1 - 2 / 49])
    last = ds.sort_by("issue", reverse=True).first()
    assert tiles[0]["lines"] == [("given", f"label: {last.ground_truth.label}"),
                                 ("suggest", f"suggested: {last.sugg.label}")]
    assert tiles[0]["image"].startswith("data:image/png;base64,")


def test_report_building_blocks_on_arrays():
    from ood_core import report

    svg = report.histogram_svg(np.array([0.1, 0.2, 0.2, 0.9]), threshold=0.5, title="t <x>")
    assert svg.startswith("<svg") and "threshold 0.5" in svg and "t &lt;x&gt;" in svg
    assert svg.count("<rect") == 3  # three non-empty bins
    svg = report.histogram_svg(np.array([0.1, 0.9]), is_positive=np.array([False, True]), names=("OOD", "ID"))
    assert "OOD" in svg and "ID" in svg
    # the second group outlined, not a second translucent fill (their overlap read as a third, unnamed colour)
    assert svg.count("fill='none' stroke='#cc0000'") == 2 and svg.count("fill='#4e9a06'") == 2  # bar + legend
    assert ">count</text>" in svg
    assert "no scores" in report.histogram_svg(np.array([]), title="x")
    long_title = "audit_label_issue: neighbour votes against the given label (higher = more suspicious)"
    svg = report.histogram_svg(np.array([0.1, 0.9]), title=long_title, width=400)
    lines = re.findall(r"<text x='4' y='\d+' font-size='13' font-weight='600'>([^<]*)</text>", svg)
    assert len(lines) == 2 and " ".join(lines) == long_title  # wrapped to the width, nothing cut
    assert all(len(line) * 7 <= 400 for line in lines)
    assert report.thumbnail_data_uri("/nonexistent.png") is None
    page = report.page("T", "sub", [("H", report.table(["a"], [["<b>"]]))])
    assert "&lt;b&gt;" in page and page.startswith("<!DOCTYPE html>")


def test_titles_naming_a_long_field_wrap_inside_their_figure():
    """A 120-letter score field in a histogram's title ran out of the 540 px figure (a word longer than a line was
    kept whole): it is broken over lines of the figure's width, the whole name kept (and in the aria-label)."""
    import ood_core as ood
    from ood_core import report

    field = "f" * 120
    title = f"{field}: k-NN distance, standardised on the trusted samples (higher = more OOD)"
    svg = report.histogram_svg(np.array([0.1, 0.5, 0.9]), threshold=0.5, title=title)
    lines = re.findall(r"<text x='4' y='\d+' font-size='13' font-weight='600'>([^<]*)</text>", svg)
    assert all(len(line) * 7 <= 540 - 8 for line in lines), [len(line) for line in lines]
    assert "".join(lines).startswith(field + ":") and f"aria-label='{title}'" in svg
    assert " ".join(lines[1:]).endswith("standardised on the trusted samples (higher = more OOD)")
    # the plotly figures: a long title is broken with <br> (plotly does not wrap titles), nothing cut
    scores, is_ood = np.linspace(0, 1, 20), np.arange(20) >= 15
    for fig in (ood.plot_score_histogram(scores, is_ood, title=title), ood.plot_roc_pr(scores, is_ood, title=title)):
        shown = fig.layout.title.text.split("<br>")
        assert len(shown) > 1 and all(len(line) <= 70 for line in shown), shown
        assert "".join(shown).replace(" ", "") == title.replace(" ", "")
    assert ood.plot_score_histogram(scores, is_ood, title="short <b>x</b>").layout.title.text == "short <b>x</b>"


def test_audit_operator_form_and_run(small, tmp_path, monkeypatch):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    ds = small
    monkeypatch.setenv("FIFTYONE_OOD_ALLOWED_DIRS", str(tmp_path))
    uri = f"{PLUGIN}/audit_dataset"
    op = foo.get_operator(uri)

    def form(params):
        ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, params=params))
        return op.resolve_input(ctx).type.properties

    props = form({})
    assert props["label_field"].default == "ground_truth" and props["reference_tag"].default == "trusted"
    assert "No embeddings yet" in props["embeddings_note"].view.label
    assert props["skip_failures"].default is True  # the SDK default, offered only when embeddings are computed
    assert not props["report_path"].invalid  # the default (~/fiftyone/ood_reports) is always allowed
    report = str(tmp_path / "op.html")
    assert not form(dict(report_path=report))["report_path"].invalid
    _embed(ds)
    props = form(dict(report_path=report))
    assert props["embeddings_field"].default == "emb" and "embeddings_note" not in props
    assert "skip_failures" not in props
    assert form(dict(report_path=report, export_dir="/etc/x"))["export_dir"].invalid  # outside the allowed folders
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")  # a folder of the user's files: FiftyOne's export would delete it
    field = form(dict(report_path=report, export_dir=str(mine)))["export_dir"]
    assert field.invalid and "already holds files that fiftyone-ood did not export" in field.error_message
    field = form(dict(report_path=str(mine / "notes.txt")))["report_path"]  # a file of the user's
    assert field.invalid and "is not a fiftyone-ood audit report" in field.error_message
    export_dir = tmp_path / "export"
    result = foo.execute_operator(uri, dict(view=ds.view()),
                                  params=dict(report_path=report, label_field="ground_truth",
                                              reference_tag="trusted", embeddings_field="emb",
                                              near_duplicates=False, export_dir=str(export_dir)))
    assert result.error is None, result.error
    text = result.result["report"]
    assert "Audit `ood_audit` done" in text and f"`{report}`" in text and "Took " in text
    assert os.path.isfile(report) and result.result["num_ood_flagged"] > 0
    # the form shows what the run would refuse: the report and export of another audit key (not its own)
    field = form(dict(report_path=report, audit_key="second"))["report_path"]
    assert field.invalid and "'ood_audit'" in field.error_message and "overwrite" in field.error_message
    assert not form(dict(report_path=report, audit_key="second", overwrite=True))["report_path"].invalid
    assert not form(dict(report_path=report))["report_path"].invalid  # the audit's own report
    other = dict(report_path=str(tmp_path / "op2.html"), audit_key="second", export_dir=str(export_dir))
    field = form(other)["export_dir"]
    assert field.invalid and "'ood_audit'" in field.error_message
    assert not form(dict(other, overwrite=True))["export_dir"].invalid
    # the export is a FiftyOne dataset of the flagged samples that loads back
    import fiftyone as fo

    exported = fo.Dataset.from_dir(dataset_dir=str(export_dir), dataset_type=fo.types.FiftyOneDataset)
    try:
        flagged = set(ds.match_tags("ood").values("filepath")) | set(ds.match_tags("label_issue").values("filepath"))
        assert {os.path.basename(p) for p in exported.values("filepath")} == {os.path.basename(p) for p in flagged}
        assert "flagged samples exported" in text
    finally:
        exported.delete()
    props = form(dict(report_path=report))  # the audit key is now taken
    assert props["audit_key"].invalid and "an audit 'ood_audit' already exists" in props["audit_key"].error_message


def test_audit_operator_default_report_lands_in_the_home_folder_and_is_shown_from_there(small, tmp_path,
                                                                                       monkeypatch):
    """The form offers ~/fiftyone/ood_reports/<dataset>_<key>.html and the result view shows the files from ~;
    a run without report_path (as a scheduled one in its worker) writes into the home of the process that runs."""
    import fiftyone.operators as foo

    from ood_core.paths import home_relative

    ds = small
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    assert home_relative(str(home / "a" / "b.html")) == "~/a/b.html"
    assert home_relative(str(tmp_path / "homework" / "b.html")) == str(tmp_path / "homework" / "b.html")
    assert home_relative("relative/b.html") == "relative/b.html"  # outside the home (cwd is not ~)
    _embed(ds)
    result = foo.execute_operator(f"{PLUGIN}/audit_dataset", dict(view=ds.view()),
                                  params=dict(label_field="ground_truth", reference_tag="trusted",
                                              embeddings_field="emb", near_duplicates=False))
    assert result.error is None, result.error
    folder = home / "fiftyone" / "ood_reports"
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) == 2 and written[0].endswith("_ood_audit.html"), written
    text = result.result["report"]
    assert f"`~/fiftyone/ood_reports/{written[0]}`" in text and f"`~/fiftyone/ood_reports/{written[1]}`" in text
    assert result.result["report_path"] == str(folder / written[0])  # the SDK's summary keeps the full path
    # the result view's button opens the report through the App server's /media route
    from urllib.parse import quote

    assert result.result["report_url"] == "/media?filepath=" + quote(str(folder / written[0]), safe="")


def test_bad_audit_options_are_refused_before_anything_is_written(small, tmp_path):
    """A typo in an option was found only at the flags or report step, after the score runs, flags and tags were
    written: the retry was then refused as an interrupted audit."""
    import ood_core as ood

    ds = small
    ds.clone_sample_field("ground_truth", "empty_labels")
    ds.set_field("empty_labels", None).save()
    _embed(ds)
    tags = ds.values("tags")
    kw = dict(embeddings_field="emb", report_path=str(tmp_path / "a.html"))
    for bad, named in ((dict(ood_pass_rate=1.5), "ood_pass_rate=1.5 is not valid; pass the share of trusted"),
                       (dict(reference=None, ood_fraction=-1), "ood_fraction=-1 is not valid"),
                       (dict(ood_fraction=5), "ood_fraction=5 is not valid"),
                       (dict(label_issue_fraction="0.1"), "label_issue_fraction='0.1' is not valid"),
                       (dict(duplicate_threshold=float("nan")), "duplicate_threshold=nan is not valid"),
                       (dict(duplicate_threshold=5), "duplicate_threshold=5 is not valid; pass a cosine distance"),
                       (dict(num_worst=2.5), "num_worst=2.5 is not valid; pass the number of thumbnails"),
                       (dict(num_worst="5"), "num_worst='5' is not valid"),
                       (dict(near_duplicates="no"), "near_duplicates='no' is not valid; pass True or False"),
                       (dict(skip_failures="no"), "skip_failures='no' is not valid"),
                       (dict(label_field="empty_labels"), "label_field 'empty_labels' holds no label in the view"),
                       # the flags step refused it only after the score runs were written
                       (dict(reference="ood"), "audit reference='ood' is a tag the audit gives to flagged samples")):
        with pytest.raises(OODInputError, match=re.escape(named)):
            ood.audit(ds, **dict(kw, **bad))
        ds.reload()
        assert ood.list_ood_runs(ds) == ["emb"] and ds.values("tags") == tags, bad
        assert not os.path.exists(tmp_path / "a.html")
    out = ood.audit(ds, num_worst=0, near_duplicates=False, **kw)  # no thumbnails is a valid choice
    assert out["num_samples"] == 50


def test_audit_of_a_dataset_that_is_not_persistent_warns_that_it_will_vanish(dataset_factory, fashion_files,
                                                                            session_extractor, tmp_path):
    """``fo.Dataset.from_dir`` makes a dataset FiftyOne deletes when the process exits: the audit's scores, tags and
    saved views went with it while the report kept telling the user to open them in the App."""
    import ood_core as ood

    paths, _ = fashion_files
    ds = dataset_factory(list(paths[:24]))
    ds.persistent = False
    out = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)
    said = [w for w in out["warnings"] if "is not persistent" in w]
    assert len(said) == 1 and said[0].endswith("Keep it: dataset.persistent = True")
    assert "is not persistent" in open(out["report_path"], encoding="utf-8").read()
    ds.persistent = True
    again = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False, overwrite=True)
    assert not any("persistent" in w for w in again["warnings"])
