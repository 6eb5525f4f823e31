"""The one-call audit's report and export as a user meets them, each reproduced on real Fashion-MNIST images, their
real pyramid embeddings and the tests' private MongoDB:

1. two audits given the same ``report_path`` (or ``export_dir``) under different audit keys, or of different
   datasets: the second silently replaced the first's report and CSV (its export), while the first audit's record
   still named them. It is now refused unless ``overwrite=True`` (then named in the warnings); redoing the same
   audit key still replaces its own report;
2. a ``report_path`` that is no HTML file name (``flagged.csv``, ``notes.txt``, ``report``) got the HTML page under
   that name (a browser shows it as text, a spreadsheet cannot read it), the CSV beside it as
   ``flagged_flagged.csv``;
3. the report's histogram drew NaN / infinite scores as ``x='nan'`` coordinates (a broken SVG).

Each test fails without the fix it covers.
"""

import csv
import os
import re

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError

from test_report_inputs import IDX, vectors  # noqa: F401 (fixture: the 20 images' real embeddings, computed once)


@pytest.fixture
def make(dataset_factory, fashion_files, vectors):
    """``make()``: a new dataset of the 20 images with their labels and their embeddings in ``emb``."""
    paths, names = fashion_files

    def build():
        ds = dataset_factory([paths[i] for i in IDX], [names[i] for i in IDX])
        ds.set_values("emb", vectors)
        return ds

    return build


KW = dict(embeddings_field="emb", near_duplicates=False, progress=False)


def _files(report):
    return [open(p, "rb").read() for p in (report, report[:-5] + "_flagged.csv")]


# --------------------------------------------------------------------------- 1. another audit's report / export


def test_an_audit_under_another_key_does_not_replace_the_first_audits_report_without_overwrite(make, tmp_path):
    ds = make()
    report = str(tmp_path / "r.html")
    first = ood.audit(ds, audit_key="first", report_path=report, **KW)
    assert first["report_path"] == report and ood.get_ood_run_info(ds, "first")["report_path"] == report
    before = _files(report)
    with pytest.raises(OODInputError, match=r"report_path=.*r\.html.* holds the report of audit 'first' of dataset "
                                            r".*'second' of dataset .* would replace them\. Pass another "
                                            r"report_path, e\.g\. .*r_second\.html.*or overwrite=True"):
        ood.audit(ds, audit_key="second", report_path=report, **KW)
    assert _files(report) == before  # the first audit's report and CSV are kept
    assert not any(key.startswith("second") for key in ood.list_ood_runs(ds))  # refused before anything is written
    # the same key redone replaces its own report, without a word
    again = ood.audit(ds, audit_key="first", report_path=report, overwrite=True, **KW)
    assert again["warnings"] == [] and again["report_path"] == report
    # with overwrite, another key replaces it, and says so (in the summary, the record and the report)
    other = ood.audit(ds, audit_key="second", report_path=report, overwrite=True, **KW)
    said = [w for w in other["warnings"] if "replaced the report of audit 'first'" in w]
    assert len(said) == 1 and ood.get_ood_run_info(ds, "second")["warnings"] == other["warnings"]
    page = open(report, encoding="utf-8").read()
    assert "replaced the report of audit &#x27;first&#x27;" in page and "audit &#x27;second&#x27;" in page
    # the report is now the second audit's: redoing it is its own, redoing the first is refused without overwrite
    assert ood.audit(ds, audit_key="second", report_path=report, overwrite=True, **KW)["warnings"] == []
    ds.delete_run("second")  # its record gone: the report no audit names any more is replaced as before
    assert ood.audit(ds, audit_key="third", report_path=report, **KW)["warnings"] == []


def test_an_audit_of_another_dataset_does_not_replace_its_report_until_that_audit_is_gone(make, tmp_path):
    one, two = make(), make()
    report = str(tmp_path / "shared.html")
    ood.audit(one, report_path=report, **KW)
    before = _files(report)
    with pytest.raises(OODInputError, match=rf"holds the report of audit 'ood_audit' of dataset '{one.name}'.*"
                                            rf"'ood_audit' of dataset '{two.name}'.* would replace them"):
        ood.audit(two, report_path=report, **KW)
    assert _files(report) == before and ood.list_ood_runs(two) == []
    one.delete()  # the first audit is gone with its dataset: its report may go
    out = ood.audit(two, report_path=report, **KW)
    assert out["warnings"] == [] and _files(report) != before
    assert f"fo.load_dataset({two.name!r})" in open(report, encoding="utf-8").read().replace("&#x27;", "'")


def test_an_audit_under_another_key_does_not_replace_the_first_audits_export_without_overwrite(make, tmp_path):
    ds = make()
    export = str(tmp_path / "export")
    ood.audit(ds, audit_key="first", report_path=str(tmp_path / "1.html"), export_dir=export, **KW)
    listed = sorted(os.listdir(export))
    stamp = open(os.path.join(export, "samples.json"), "rb").read()
    with pytest.raises(OODInputError, match=r"export_dir=.*export.* holds the export of audit 'first' of dataset .*"
                                            r"'second'.* would replace it\. Pass another export_dir.*second_export"
                                            r".*or overwrite=True"):
        ood.audit(ds, audit_key="second", report_path=str(tmp_path / "2.html"), export_dir=export, **KW)
    assert sorted(os.listdir(export)) == listed and open(os.path.join(export, "samples.json"), "rb").read() == stamp
    assert not os.path.exists(tmp_path / "2.html") and "second" not in ood.list_ood_runs(ds)
    # the same key redone replaces its own export; another key with overwrite replaces it and says so
    assert ood.audit(ds, audit_key="first", report_path=str(tmp_path / "1.html"), export_dir=export,
                     overwrite=True, **KW)["warnings"] == []
    out = ood.audit(ds, audit_key="second", report_path=str(tmp_path / "2.html"), export_dir=export, overwrite=True,
                    **KW)
    assert [w for w in out["warnings"] if "replaced the export of audit 'first'" in w]
    assert out["export_dir"] == export and "samples.json" in os.listdir(export)


# --------------------------------------------------------------------------- 2. a report_path that is no HTML name


@pytest.mark.parametrize("name", ["flagged.csv", "notes.txt", "report", "r.png"])
def test_a_report_path_that_is_no_html_file_name_is_refused_before_anything_is_written(make, tmp_path, name):
    ds = make()
    stem = os.path.splitext(name)[0]
    with pytest.raises(OODInputError, match=rf"report_path=.*{name}.* does not end with '\.html'.*Pass e\.g\. "
                                            rf".*{stem}\.html"):
        ood.audit(ds, report_path=str(tmp_path / name), **KW)
    assert os.listdir(tmp_path) == [] and ood.list_ood_runs(ds) == []


def test_an_html_report_path_in_any_case_is_written_and_its_csv_reads_back(make, tmp_path):
    ds = make()
    for name in ("R.HTML", "page.htm"):
        out = ood.audit(ds, audit_key=f"k{len(name)}", report_path=str(tmp_path / name), **KW)
        assert out["report_path"] == str(tmp_path / name) and os.path.isfile(out["report_path"])
        with open(out["csv_path"], newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert rows[0][:3] == ["sample_id", "filepath", "issue"] and len(rows) == 1 + out["num_csv_rows"]


# --------------------------------------------------------------------------- 3. histogram of scores not finite


def test_the_report_histogram_leaves_out_scores_that_are_not_finite_and_says_how_many():
    from ood_core import report

    scores = np.array([0.1, np.nan, 0.5, np.inf, 0.9, -np.inf])
    svg = report.histogram_svg(scores, threshold=0.5, title="t")
    assert "nan" not in svg.lower().replace("nan or infinite", "") and "inf'" not in svg
    assert "3 scores not drawn: NaN or infinite" in svg
    heights = re.findall(r"<rect x='[^']+' y='[^']+' width='[^']+' height='([^']+)'", svg)
    assert len(heights) == 3 and all(float(h) > 0 for h in heights)  # one bar for each finite score
    # two groups: the flags of the scores left out are left out with them
    two = report.histogram_svg(scores, is_positive=np.array([True, True, False, False, False, True]),
                               names=("OOD", "ID"), title="t")
    assert "nan" not in two.lower().replace("nan or infinite", "") and "3 scores not drawn" in two
    only = report.histogram_svg(np.array([np.nan]), title="t")
    assert "no scores" in only and "1 score not drawn" in only


def test_the_report_histogram_shows_a_threshold_below_every_score():
    """A view audited against trusted samples outside it (a new batch), all of it more OOD than they are: the
    threshold lay left of the axis, its line drawn at x=-900, off the picture."""
    from ood_core import report

    svg = report.histogram_svg(np.array([5.0, 6.0, 7.0]), threshold=1.0, title="t")
    (x,) = re.findall(r"<line x1='([^']+)'[^>]*stroke='#f57c00'", svg)
    width = float(re.search(r"<svg [^>]*width='([^']+)'", svg).group(1))
    assert 0 < float(x) < width and "threshold 1" in svg
    ticks = [float(t) for t in re.findall(r"text-anchor='middle'>(-?[0-9.e+-]+)</text>", svg)]
    assert min(ticks) == 1.0 and max(ticks) == 7.0  # the axis runs from the threshold to the highest score


def test_an_audit_whose_key_fiftyone_renamed_keeps_its_report(make, tmp_path):
    """The record renamed with FiftyOne's own ``rename_run`` still names the report: another audit is refused
    (it was taken for a report no audit names, and replaced)."""
    ds = make()
    report = str(tmp_path / "r.html")
    ood.audit(ds, audit_key="first", report_path=report, **KW)
    ds.rename_run("first", "kept")
    before = _files(report)
    with pytest.raises(OODInputError, match=r"holds the report of audit 'kept'"):
        ood.audit(ds, audit_key="second", report_path=report, **KW)
    assert _files(report) == before
