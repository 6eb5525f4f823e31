"""Edges of the one-call audit a probe found, each reproduced on real images (Fashion-MNIST PNG files), real
vectors and the tests' private MongoDB:

1. audit B replaced audit A's report (or export) with ``overwrite=True``, and A's record (config and stored
   summary) still named the file as A's output: listing or inspecting A pointed at B's report. A's record now
   stops naming it (``report_path`` / ``csv_path`` / ``export_dir`` None) and says who took it
   (``replaced_outputs``); deleting A never touches B's files;
2. a ``report_path`` in a folder that does not exist: the audit made the folder in its upfront checks, so an audit
   refused by a later check (a label field that does not exist) left an empty folder behind; a report_path under a
   file was refused as "cannot be created ([Errno 17] File exists)". The folder is now checked, made only when the
   report is written, and a file in the way is named;
3. an audit record deleted with FiftyOne's own ``dataset.delete_run``: its saved views stayed, and redoing the
   audit, even with ``overwrite=True``, was refused for ever ("saved views ... which no audit made"), though they
   were exactly as the audit saved them. The audit's runs now keep the views' fingerprints, and a redo replaces
   them (a view the user changed since is still refused);
4. a ``report_path`` differing from an audit's report only in its ending (``r.htm`` beside ``r.html``) shares its
   CSV (``r_flagged.csv``): it was refused as "not a fiftyone-ood audit report (or its CSV)", which it is; the
   refusal now names the report whose CSV it is;
5. a redo of audit A killed or failed after writing its report (before its record): A's record still named the
   file, but the file's token matched no record, so it counted as a report no audit names and another audit took
   it without ``overwrite`` (A's record then named that audit's report). It is now A's until A is redone.

Each test fails without the fix it covers.
"""

import os

import pytest

import ood_core as ood
from ood_core.errors import OODInputError


@pytest.fixture
def make(audit_images):
    """The audit tests' dataset builder (conftest ``audit_images``)."""
    return audit_images


KW = dict(embeddings_field="vec", near_duplicates=False, progress=False)


def _bytes(*paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            out.append(sorted((n, open(os.path.join(p, n), "rb").read()) for n in os.listdir(p)
                              if os.path.isfile(os.path.join(p, n))))
        else:
            out.append(open(p, "rb").read())
    return out


# --------------------------------------------------------------------------- 1. another audit took the output


def test_an_audit_whose_report_another_audit_replaced_no_longer_names_it(make, tmp_path):
    ds = make()
    report = str(tmp_path / "r.html")
    csv = str(tmp_path / "r_flagged.csv")
    ood.audit(ds, audit_key="first", report_path=report, **KW)
    second = ood.audit(ds, audit_key="second", report_path=report, overwrite=True, **KW)
    (said,) = [w for w in second["warnings"] if "replaced the report of audit 'first'" in w]
    assert "no longer names" in said and "still names" not in said
    info = ood.get_ood_run_info(ds, "first")
    assert info["report_path"] is None and info["csv_path"] is None
    assert "replaced by audit 'second'" in info["replaced_outputs"]["report_path"] and report in \
        info["replaced_outputs"]["report_path"]
    summary = ood.load_ood_results(ds, "first").summary
    assert summary["report_path"] is None and summary["csv_path"] is None
    assert ood.get_ood_run_info(ds, "second")["report_path"] == report  # the report is the second audit's
    before = _bytes(report, csv)
    # another audit to that path is refused: the report is the second's now
    with pytest.raises(OODInputError, match=r"holds the report of audit 'second'"):
        ood.audit(ds, audit_key="other", report_path=report, **KW)
    # deleting the first audit (this package's call, FiftyOne's own) never touches the second's report and CSV
    ood.delete_ood_run(ds, "first")
    assert _bytes(report, csv) == before
    ood.audit(ds, audit_key="third", report_path=str(tmp_path / "t.html"), **KW)
    ds.delete_run("third")
    assert _bytes(report, csv) == before and ood.get_ood_run_info(ds, "second")["report_path"] == report


def test_an_audit_of_another_dataset_whose_report_was_replaced_no_longer_names_it(make, tmp_path):
    one, two = make(), make(12)
    report = str(tmp_path / "shared.html")
    ood.audit(one, report_path=report, **KW)
    out = ood.audit(two, report_path=report, overwrite=True, **KW)
    assert [w for w in out["warnings"] if f"replaced the report of audit 'ood_audit' of dataset '{one.name}'" in w]
    info = ood.get_ood_run_info(one, "ood_audit")
    assert info["report_path"] is None and two.name in info["replaced_outputs"]["report_path"]
    assert ood.get_ood_run_info(two, "ood_audit")["report_path"] == report


def test_an_audit_whose_export_another_audit_replaced_no_longer_names_it(make, tmp_path):
    ds = make()
    export = str(tmp_path / "export")
    ood.audit(ds, audit_key="first", report_path=str(tmp_path / "1.html"), export_dir=export, **KW)
    out = ood.audit(ds, audit_key="second", report_path=str(tmp_path / "2.html"), export_dir=export,
                    overwrite=True, **KW)
    (said,) = [w for w in out["warnings"] if "replaced the export of audit 'first'" in w]
    assert "no longer names" in said
    info = ood.get_ood_run_info(ds, "first")
    assert info["export_dir"] is None and info["report_path"] == str(tmp_path / "1.html")  # its report stays
    assert "replaced by audit 'second'" in info["replaced_outputs"]["export_dir"]
    assert ood.load_ood_results(ds, "first").summary["export_dir"] is None
    before = _bytes(export)
    ood.delete_ood_run(ds, "first")
    assert _bytes(export) == before and ood.get_ood_run_info(ds, "second")["export_dir"] == export


# --------------------------------------------------------------------------- 2. the report's folder


def test_an_audit_refused_after_its_checks_leaves_no_report_folder(make, tmp_path):
    ds = make()
    folder = tmp_path / "new" / "deeper"
    with pytest.raises(OODInputError, match=r"label field 'nope' does not exist"):
        ood.audit(ds, label_field="nope", report_path=str(folder / "r.html"), **KW)
    assert not os.path.exists(tmp_path / "new") and ood.list_ood_runs(ds) == []
    out = ood.audit(ds, report_path=str(folder / "r.html"), **KW)  # made when the report is written
    assert os.path.isfile(out["report_path"]) and os.path.isfile(out["csv_path"])


def test_a_report_path_under_a_file_names_the_file_before_anything_is_written(make, tmp_path):
    ds = make()
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(OODInputError, match=r"report_path=.*notes/sub/r\.html.*notes' is a file, not a folder.*pass "
                                            r"a report_path in a folder"):
        ood.audit(ds, report_path=str(tmp_path / "notes" / "sub" / "r.html"), **KW)
    assert (tmp_path / "notes").read_text() == "mine" and ood.list_ood_runs(ds) == []


# --------------------------------------------------------------------------- 3. FiftyOne's own delete_run


def test_an_audit_whose_record_fiftyone_deleted_can_be_redone_over_its_views(make, tmp_path):
    ds = make()
    report = str(tmp_path / "r.html")
    first = ood.audit(ds, report_path=report, **KW)
    assert first["saved_views"]
    ds.delete_run("ood_audit")  # FiftyOne's own call: the runs, tags and saved views stay
    assert set(first["saved_views"]) <= set(ds.list_saved_views())
    again = ood.audit(ds, report_path=report, overwrite=True, **KW)
    assert again["saved_views"] == first["saved_views"]
    for name in again["saved_views"]:
        assert ds.get_saved_view_info(name)["description"].startswith("fiftyone-ood audit 'ood_audit'")
    # the redo is recorded: deleting it with this package's call removes its views
    ood.delete_ood_run(ds, "ood_audit")
    assert not set(first["saved_views"]) & set(ds.list_saved_views())


def test_a_view_the_user_changed_after_fiftyone_deleted_the_audit_record_is_still_theirs(make, tmp_path):
    ds = make()
    name = ood.audit(ds, report_path=str(tmp_path / "r.html"), **KW)["saved_views"][0]
    ds.delete_run("ood_audit")
    ds.save_view(name, ds.limit(2), description="mine", overwrite=True)
    with pytest.raises(OODInputError, match=rf"saved views \['{name}'\]"):
        ood.audit(ds, report_path=str(tmp_path / "r.html"), overwrite=True, **KW)
    assert len(ds.load_saved_view(name)) == 2 and ds.get_saved_view_info(name)["description"] == "mine"


# --------------------------------------------------------------------------- 4. two report names, one CSV


def test_a_report_name_sharing_another_reports_csv_names_that_report(make, tmp_path):
    ds = make()
    first = ood.audit(ds, audit_key="first", report_path=str(tmp_path / "r.html"), **KW)
    before = _bytes(first["report_path"], first["csv_path"])
    with pytest.raises(OODInputError, match=r"report_path=.*r\.htm'.*its CSV .*r_flagged\.csv' is the CSV of the "
                                            r"audit report .*r\.html'.*Pass .*r\.html' to redo that report"):
        ood.audit(ds, audit_key="second", report_path=str(tmp_path / "r.htm"), **KW)
    assert _bytes(first["report_path"], first["csv_path"]) == before and "second" not in ood.list_ood_runs(ds)
    assert not os.path.exists(tmp_path / "r.htm")


# --------------------------------------------------------------------------- 5. a redo failed after its report


def test_a_report_a_failed_redo_wrote_is_still_the_audits_its_record_names(make, tmp_path, monkeypatch):
    import fiftyone.core.collections as foc
    import fiftyone.core.dataset as fod
    from fault_helpers import run_faulted

    ds = make()
    report = str(tmp_path / "r.html")
    ood.audit(ds, audit_key="first", report_path=report, **KW)
    steps = ((fod.Dataset, "rename_run"), (foc.SampleCollection, "register_run"),
             (foc.SampleCollection, "save_run_results"))
    fault, failed = run_faulted(monkeypatch, 1, steps, lambda: ood.audit(ds, audit_key="first", report_path=report,
                                                                         overwrite=True, **KW), after_report=True)
    assert failed
    ood.repair_ood_runs(ds)
    info = ood.get_ood_run_info(ds, "first")  # the file shows the failed redo's results, not the recorded audit's
    assert info["report_path"] is None and "report_path" in info["replaced_outputs"]
    before = _bytes(report)
    with pytest.raises(OODInputError, match=r"holds the report of audit 'first'"):
        ood.audit(ds, audit_key="other", report_path=report, **KW)
    assert _bytes(report) == before
    out = ood.audit(ds, audit_key="other", report_path=report, overwrite=True, **KW)
    assert [w for w in out["warnings"] if "replaced the report of audit 'first'" in w]
    assert ood.get_ood_run_info(ds, "first")["report_path"] is None

